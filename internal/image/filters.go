package image

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// checkFilters rejects filter names the endpoint does not know, with Docker's message.
func checkFilters(f Filters, allowed ...string) error {
	for k := range f {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			return errInvalid("invalid filter '%s'", k)
		}
	}
	return nil
}

// boolFilter reads a filter such as dangling=true; set is false when it is absent.
func boolFilter(f Filters, name string) (value, set bool, err error) {
	vals := f[name]
	if len(vals) == 0 {
		return false, false, nil
	}
	for _, v := range vals {
		switch strings.ToLower(v) {
		case "true", "1":
			value = true
		case "false", "0":
		default:
			return false, false, errInvalid("invalid filter '%s=%s'", name, v)
		}
	}
	return value, true, nil
}

// matchLabels reports whether labels satisfy every "key" or "key=value" in want.
func matchLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, hasValue := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

// matchAnyLabel reports whether labels satisfy at least one entry of want (for "label!").
func matchAnyLabel(labels map[string]string, want []string) bool {
	for _, w := range want {
		if matchLabels(labels, []string{w}) {
			return true
		}
	}
	return false
}

// parseTimestamp parses Docker's `until`/`since` time values: a Go duration relative to now
// ("10m"), a Unix timestamp with optional fraction, or an RFC 3339 date/time (with or without
// zone, seconds or time).
func parseTimestamp(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("empty timestamp")
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !strings.ContainsAny(v, "eE") {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05Z07:00",
		"2006-01-02T15:04:05", "2006-01-02T15:04Z07:00", "2006-01-02T15:04", "2006-01-02T15Z07:00", "2006-01-02T15",
		"2006-01-02Z07:00", "2006-01-02"} {
		loc := time.Local
		if strings.Contains(layout, "Z07:00") {
			loc = time.UTC
		}
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse %q as a timestamp", v)
}

func untilFilter(f Filters, now time.Time) (time.Time, bool, error) {
	vals := f["until"]
	if len(vals) == 0 {
		return time.Time{}, false, nil
	}
	if len(vals) > 1 {
		return time.Time{}, false, errInvalid("more than one until filter specified")
	}
	t, err := parseTimestamp(vals[0], now)
	if err != nil {
		return time.Time{}, false, errInvalid("invalid filter 'until=%s': %v", vals[0], err)
	}
	return t, true, nil
}
