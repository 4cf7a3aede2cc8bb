package shim

import (
	"encoding/binary"
	"io"
	"sync"
)

// Stream identifiers of Docker's multiplexed attach framing (stdcopy).
const (
	streamStdout byte = 1
	streamStderr byte = 2
)

// frameWriter writes Docker's multiplexed framing: an 8-byte header (stream id, three zero
// bytes, big-endian payload length) before each payload. Used when the container has no TTY.
type frameWriter struct {
	mu sync.Mutex // one frame at a time on the shared connection
	w  io.Writer
}

func (f *frameWriter) writeFrame(stream byte, p []byte) error {
	var hdr [8]byte
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := f.w.Write(p)
	return err
}

// clientBuffer is how many output chunks an attached client may lag before it is dropped:
// the container's output never waits for a slow client. A chunk is one read of up to
// pumpBufSize bytes, so this still allows megabytes of lag, while the channel itself, allocated
// whole for as long as the client stays attached, costs 32 bytes per slot.
const clientBuffer = 128

type chunk struct {
	stream byte
	data   []byte
}

// broadcaster fans container output out to attached clients.
type broadcaster struct {
	mu      sync.Mutex // guards clients and closed
	clients map[chan chunk]struct{}
	closed  bool
}

func newBroadcaster() *broadcaster {
	return &broadcaster{clients: make(map[chan chunk]struct{})}
}

// add registers a client; the channel is closed when output ends or the client lags.
func (b *broadcaster) add() chan chunk {
	ch := make(chan chunk, clientBuffer)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch
	}
	b.clients[ch] = struct{}{}
	return ch
}

func (b *broadcaster) remove(ch chan chunk) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.clients[ch]; ok {
		delete(b.clients, ch)
		close(ch)
	}
}

func (b *broadcaster) send(stream byte, p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.clients) == 0 {
		return
	}
	data := append([]byte(nil), p...)
	for ch := range b.clients {
		select {
		case ch <- chunk{stream, data}:
		default:
			delete(b.clients, ch)
			close(ch)
		}
	}
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.clients {
		delete(b.clients, ch)
		close(ch)
	}
}
