package daemon

import (
	"encoding/json"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/containerd/errdefs"
)

// invalid classifies err as the caller's mistake (HTTP 400), keeping its message.
func invalid(err error) error {
	if err == nil || errdefs.IsInvalidArgument(err) || errdefs.IsNotImplemented(err) {
		return err
	}
	return errdefs.ErrInvalidArgument.WithMessage(err.Error())
}

func conflict(msg string) error { return errdefs.ErrConflict.WithMessage(msg) }

// clone deep-copies an API value by a JSON round trip (the API types are JSON-shaped), so that
// stored records never alias a request's slices and maps.
func clone[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		return v
	}
	return out
}

func numCPU() int { return runtime.NumCPU() }

// Name parts for generated container names, in Docker's adjective_surname style.
var (
	nameLeft  = []string{"admiring", "brave", "calm", "dazzling", "eager", "focused", "gallant", "happy", "inspiring", "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "pensive", "quirky", "relaxed", "serene", "tender", "upbeat", "vibrant", "wizardly", "xenial", "youthful", "zealous"}
	nameRight = []string{"albattani", "babbage", "curie", "darwin", "euclid", "fermat", "galileo", "hopper", "lovelace", "mirzakhani", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath", "zhukovsky", "kepler", "lamport", "hamilton", "knuth", "liskov", "torvalds", "goodall"}
)

// randomName returns a name no container has.
func (d *Daemon) randomName() string {
	for i := 0; ; i++ {
		n := nameLeft[rand.IntN(len(nameLeft))] + "_" + nameRight[rand.IntN(len(nameRight))]
		if i > 10 {
			n += "_" + string(rune('0'+rand.IntN(10))) + string(rune('0'+rand.IntN(10)))
		}
		if _, err := d.ctrs.get(n); err != nil {
			return n
		}
	}
}

// background runs work left for after a reply and waits for it. Unlike a sync.WaitGroup it
// allows new work while a Wait is under way (a container can exit while the daemon stops).
type background struct {
	mu   sync.Mutex // guards n and idle
	n    int
	idle chan struct{} // closed when n drops to zero; nil when nobody waits
}

// Go runs f in a goroutine that Wait waits for.
func (b *background) Go(f func()) {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
	go func() {
		defer b.done()
		f()
	}()
}

func (b *background) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n--
	if b.n == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

// Wait returns once no work runs.
func (b *background) Wait() {
	for {
		b.mu.Lock()
		if b.n == 0 {
			b.mu.Unlock()
			return
		}
		if b.idle == nil {
			b.idle = make(chan struct{})
		}
		idle := b.idle
		b.mu.Unlock()
		<-idle
	}
}
