// Package events is the daemon's in-memory event bus: components publish Docker-shaped event
// messages, and API clients of /events subscribe to them. It keeps a bounded backlog so that
// `--since` can replay recent history. It does not persist anything and never blocks a publisher
// on a slow subscriber: a subscriber that falls behind loses its subscription.
package events

import (
	"context"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// backlog is how many past events are kept for `--since` replays, as in dockerd.
const backlog = 1024

// subscriberBuffer is how far a subscriber may fall behind before it is dropped.
const subscriberBuffer = 256

// Bus fans out events to subscribers. The zero value is not usable; call New.
type Bus struct {
	mu sync.Mutex // guards everything below
	// past holds the newest events, oldest first, at most backlog of them.
	past []events.Message
	subs map[chan events.Message]struct{}
	now  func() time.Time
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{subs: make(map[chan events.Message]struct{}), now: time.Now}
}

// Publish records an event of type typ with action on the object id, with attributes.
func (b *Bus) Publish(typ events.Type, action events.Action, id string, attrs map[string]string) {
	t := b.now()
	msg := events.Message{
		Type:     typ,
		Action:   action,
		Actor:    events.Actor{ID: id, Attributes: attrs},
		Scope:    "local",
		Time:     t.Unix(),
		TimeNano: t.UnixNano(),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.past) >= backlog {
		copy(b.past, b.past[1:])
		b.past = b.past[:len(b.past)-1]
	}
	b.past = append(b.past, msg)
	for ch := range b.subs {
		select {
		case ch <- msg:
		default:
			// The subscriber is not keeping up; close it rather than block the publisher.
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// Subscribe returns the events since the given time (zero: none) and a channel of new ones.
// The channel is closed when ctx ends or when the subscriber falls too far behind.
func (b *Bus) Subscribe(ctx context.Context, since time.Time) ([]events.Message, <-chan events.Message) {
	ch := make(chan events.Message, subscriberBuffer)
	b.mu.Lock()
	var old []events.Message
	if !since.IsZero() {
		for _, m := range b.past {
			if m.TimeNano >= since.UnixNano() {
				old = append(old, m)
			}
		}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}()
	return old, ch
}
