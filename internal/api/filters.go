package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DecodeFilters parses the `filters` query parameter. Docker clients send it in two JSON forms:
// {"name": {"value": true}} (current) and {"name": ["value"]} (API < 1.22 and some tools). Values
// are returned sorted so that the result is deterministic.
func DecodeFilters(s string) (Filters, error) {
	f := Filters{}
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	var m map[string]map[string]bool
	if err := json.Unmarshal([]byte(s), &m); err == nil {
		for k, vals := range m {
			list := make([]string, 0, len(vals))
			for v := range vals {
				list = append(list, v)
			}
			slices.Sort(list)
			f[k] = list
		}
		return f, nil
	}
	var l map[string][]string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, invalidArgument(fmt.Errorf("invalid filter: %w", err))
	}
	for k, vals := range l {
		list := slices.Clone(vals)
		slices.Sort(list)
		f[k] = slices.Compact(list)
	}
	return f, nil
}

// validateFilters rejects filter names not in allowed, with dockerd's message.
func validateFilters(f Filters, allowed ...string) error {
	for k := range f {
		if !slices.Contains(allowed, k) {
			return invalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	return nil
}

// filtersFromRequest decodes and validates the request's `filters` parameter.
func filtersFromRequest(r *http.Request, allowed ...string) (Filters, error) {
	f, err := DecodeFilters(r.Form.Get("filters"))
	if err != nil {
		return nil, err
	}
	if err := validateFilters(f, allowed...); err != nil {
		return nil, err
	}
	return f, nil
}

// boolValue is dockerd's reading of a boolean form value: absent, "", "0", "no", "false" and
// "none" are false, anything else true.
func boolValue(r *http.Request, key string) bool {
	switch strings.ToLower(strings.TrimSpace(r.Form.Get(key))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}

// boolValueOrDefault is boolValue, but def when the key is absent.
func boolValueOrDefault(r *http.Request, key string, def bool) bool {
	if _, ok := r.Form[key]; !ok {
		return def
	}
	return boolValue(r, key)
}

// parseForm parses the query (and urlencoded bodies) with a clear 400 on malformed input.
func parseForm(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return invalidArgument(fmt.Errorf("invalid request: %w", err))
	}
	return nil
}

// parseTimestamp parses the since/until values of /events: Unix seconds with an optional
// fraction of up to nine digits ("1700000000.000000001"), as the Docker client sends them.
func parseTimestamp(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	secStr, fracStr, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, invalidArgument(fmt.Errorf("invalid timestamp %q: %w", s, err))
	}
	var nsec int64
	if hasFrac {
		if fracStr == "" || len(fracStr) > 9 || strings.TrimLeft(fracStr, "0123456789") != "" {
			return time.Time{}, invalidArgument(errors.New("invalid timestamp " + strconv.Quote(s)))
		}
		fracStr += strings.Repeat("0", 9-len(fracStr))
		nsec, _ = strconv.ParseInt(fracStr, 10, 64)
	}
	if sec < -1<<40 || sec > 1<<40 {
		return time.Time{}, invalidArgument(errors.New("timestamp out of range: " + strconv.Quote(s)))
	}
	return time.Unix(sec, nsec), nil
}
