package registry

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// basicAuth checks HTTP basic credentials against an htpasswd file of bcrypt entries (as
// `htpasswd -B` writes them).
//
// Threat model: the client controls the Authorization header. bcrypt makes each check cost
// tens of milliseconds, and Docker clients send credentials on every request, so a successful
// check is remembered by a SHA-256 of "user\x00password"; failed checks are never cached, so a
// guess always pays the bcrypt price.
type basicAuth struct {
	users map[string][]byte // user -> bcrypt hash; read-only after load
	dummy []byte            // bcrypt hash of a random password, checked for unknown users

	mu       sync.Mutex
	verified map[[sha256.Size]byte]bool // guarded by mu
}

// maxVerifiedCache bounds the cache of verified credentials.
const maxVerifiedCache = 1024

// loadHtpasswd reads an htpasswd file. Only bcrypt entries ($2a$, $2b$, $2y$) are accepted:
// the other formats (crypt, MD5, SHA-1, plain) are weak.
func loadHtpasswd(path string) (*basicAuth, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read htpasswd file: %w", err)
	}
	a := &basicAuth{users: map[string][]byte{}, verified: map[[sha256.Size]byte]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		user, hash, ok := strings.Cut(l, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd file %s line %d: expected user:hash", path, line)
		}
		if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
			return nil, fmt.Errorf("htpasswd file %s line %d: user %q does not have a bcrypt hash (create entries with `htpasswd -B`)", path, line, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("htpasswd file %s line %d: user %q: %w", path, line, user, err)
		}
		a.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read htpasswd file: %w", err)
	}
	if len(a.users) == 0 {
		return nil, fmt.Errorf("htpasswd file %s has no users", path)
	}
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	if a.dummy, err = bcrypt.GenerateFromPassword(secret[:], bcrypt.DefaultCost); err != nil {
		return nil, fmt.Errorf("prepare htpasswd check: %w", err)
	}
	return a, nil
}

// check reports whether the request carries valid credentials, and the user name.
func (a *basicAuth) check(r *http.Request) (string, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	hash, known := a.users[user]
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	a.mu.Lock()
	cached := a.verified[key]
	a.mu.Unlock()
	if cached && known {
		return user, true
	}
	if !known {
		// Spend the same time as a real check so that user names cannot be probed.
		_ = bcrypt.CompareHashAndPassword(a.dummy, []byte(pass))
		return "", false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return "", false
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerifiedCache {
		clear(a.verified)
	}
	a.verified[key] = true
	a.mu.Unlock()
	return user, true
}
