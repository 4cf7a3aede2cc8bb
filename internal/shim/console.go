package shim

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// listenConsole binds the unix socket to which the runtime sends the pty master.
func listenConsole(path string) (*os.File, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on console socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	_ = l.Close()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return f, nil
}

// receiveConsole accepts one connection on the console socket and receives the pty master fd
// sent with SCM_RIGHTS.
func receiveConsole(lf *os.File) (*os.File, error) {
	nfd, _, err := unix.Accept(int(lf.Fd()))
	if err != nil {
		return nil, fmt.Errorf("accept console connection: %w", err)
	}
	defer unix.Close(nfd)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(nfd, buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("console socket: expected one control message with the pty master")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("console socket: expected exactly one file descriptor")
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

// SendConsole sends a pty master over the console socket at path, as runc does. Runtimes call it.
func SendConsole(path string, master *os.File) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("dial console socket: %w", err)
	}
	defer c.Close()
	oob := unix.UnixRights(int(master.Fd()))
	if _, _, err := c.WriteMsgUnix([]byte(master.Name()), oob, nil); err != nil {
		return fmt.Errorf("send console: %w", err)
	}
	return nil
}
