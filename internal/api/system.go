package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/version"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"
)

func (s *server) ping(_ context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	h := w.Header()
	h.Set("Builder-Version", "1")
	h.Set("Docker-Experimental", "false")
	h.Set("Swarm", "inactive")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
	return nil
}

// buildInfo returns the commit and time the binary was built from: the link-time values, else
// what the Go toolchain recorded from VCS.
func buildInfo() (commit, built string) {
	if version.GitCommit != "" && version.GitCommit != "unknown" {
		return version.GitCommit, version.BuildTime
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", ""
	}
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			commit = st.Value
			if len(commit) > 7 {
				commit = commit[:7]
			}
		case "vcs.time":
			built = st.Value
		}
	}
	if commit == "" {
		commit = version.GitCommit
	}
	return commit, built
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func (s *server) version(_ context.Context, w http.ResponseWriter, _ *http.Request, _ map[string]string) error {
	commit, built := buildInfo()
	kernel := kernelVersion()
	v := system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Berth Engine"},
		Version:       s.cfg.Version,
		APIVersion:    MaxAPIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GitCommit:     commit,
		GoVersion:     runtime.Version(),
		KernelVersion: kernel,
		BuildTime:     built,
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: s.cfg.Version,
			Details: map[string]string{
				"ApiVersion":    MaxAPIVersion,
				"MinAPIVersion": MinAPIVersion,
				"GitCommit":     commit,
				"GoVersion":     runtime.Version(),
				"Os":            runtime.GOOS,
				"Arch":          runtime.GOARCH,
				"KernelVersion": kernel,
				"BuildTime":     built,
				"Experimental":  "false",
			},
		}},
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *server) info(ctx context.Context, w http.ResponseWriter, _ *http.Request, _ map[string]string) error {
	if s.cfg.System == nil {
		return notImplemented(errors.New("system information is not available"))
	}
	info, err := s.cfg.System.Info(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// eventFilterNames are the filters dockerd accepts on /events.
var eventFilterNames = []string{"config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"}

func (s *server) events(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if err := parseForm(r); err != nil {
		return err
	}
	if s.cfg.Events == nil {
		return notImplemented(errors.New("events are not available"))
	}
	since, err := parseTimestamp(r.Form.Get("since"))
	if err != nil {
		return err
	}
	until, err := parseTimestamp(r.Form.Get("until"))
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		return invalidArgument(errors.New("`since` time (" + r.Form.Get("since") + ") cannot be after `until` time (" + r.Form.Get("until") + ")"))
	}
	f, err := filtersFromRequest(r, eventFilterNames...)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	past, ch := s.cfg.Events.Subscribe(ctx, since)

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush := func() { _ = http.NewResponseController(w).Flush() }
	flush()
	enc := json.NewEncoder(w)
	send := func(m eventtypes.Message) bool {
		if !until.IsZero() && m.TimeNano > until.UnixNano() {
			return true
		}
		if !matchEvent(f, m) {
			return true
		}
		if err := enc.Encode(m); err != nil {
			return false
		}
		flush()
		return true
	}
	for _, m := range past {
		if !send(m) {
			return nil
		}
	}
	var timeout <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timeout:
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			if !send(m) {
				return nil
			}
		}
	}
}

// matchEvent applies /events filters: values of one filter are alternatives, filters combine.
func matchEvent(f Filters, m eventtypes.Message) bool {
	attrs := m.Actor.Attributes
	for key, vals := range f {
		if len(vals) == 0 {
			continue
		}
		var ok bool
		switch key {
		case "type":
			ok = slices.Contains(vals, string(m.Type))
		case "event":
			action, _, _ := strings.Cut(string(m.Action), ":") // "exec_start: sh" matches "exec_start"
			ok = slices.Contains(vals, string(m.Action)) || slices.Contains(vals, strings.TrimSpace(action))
		case "scope":
			ok = slices.Contains(vals, m.Scope)
		case "label":
			ok = slices.ContainsFunc(vals, func(v string) bool {
				k, want, hasValue := strings.Cut(v, "=")
				got, present := attrs[k]
				return present && (!hasValue || got == want)
			})
		case "image":
			var cands []string
			if m.Type == eventtypes.ImageEventType {
				cands = append(cands, m.Actor.ID, attrs["name"])
			}
			cands = append(cands, attrs["image"])
			ok = slices.ContainsFunc(vals, func(v string) bool { return matchesName(v, cands) })
		case "container":
			ok = m.Type == eventtypes.ContainerEventType && slices.ContainsFunc(vals, func(v string) bool {
				return v == m.Actor.ID || v == attrs["name"] || (len(v) >= 12 && strings.HasPrefix(m.Actor.ID, v))
			})
		default:
			// Objects berth does not have yet (network, volume, ...): the event is of another type.
			ok = string(m.Type) == key && slices.ContainsFunc(vals, func(v string) bool { return v == m.Actor.ID || v == attrs["name"] })
		}
		if !ok {
			return false
		}
	}
	return true
}

// matchesName reports whether v names one of cands: exactly, without the ":tag" of the
// candidate, or as an ID prefix.
func matchesName(v string, cands []string) bool {
	for _, c := range cands {
		if c == "" {
			continue
		}
		if c == v || strings.TrimPrefix(c, "sha256:") == strings.TrimPrefix(v, "sha256:") {
			return true
		}
		if i := strings.LastIndex(c, ":"); i > 0 && !strings.Contains(c[i:], "/") && c[:i] == v {
			return true
		}
	}
	return false
}
