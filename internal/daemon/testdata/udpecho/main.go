// Command udpecho is a test helper copied into containers (busybox's nc has no UDP): it echoes
// UDP datagrams on :5000 and prints them.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	c, err := net.ListenPacket("udp4", ":5000")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		fmt.Printf("%s", buf[:n])
		_, _ = c.WriteTo(buf[:n], from)
	}
}
