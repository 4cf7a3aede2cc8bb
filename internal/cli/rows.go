package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
)

const none = "<none>"

// Default formats and headers, as docker's.
const (
	defaultImageFormat        = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
	defaultImageDigestsFormat = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
	defaultHistoryFormat      = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	historyCreatedByWidth     = 45
)

var imageHeaders = map[string]string{
	"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
	"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
	"SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
}

var historyHeaders = map[string]string{
	"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
	"Size": "SIZE", "Comment": "COMMENT",
}

// imageRow is one line of `berth images`: one repository:tag of an image.
type imageRow struct {
	img    image.Summary
	repo   string
	tag    string
	digest string
	trunc  bool
	now    time.Time
}

func (r imageRow) ID() string {
	if r.trunc {
		return truncateID(r.img.ID)
	}
	return r.img.ID
}
func (r imageRow) Repository() string   { return r.repo }
func (r imageRow) Tag() string          { return r.tag }
func (r imageRow) Digest() string       { return r.digest }
func (r imageRow) CreatedSince() string { return humanDuration(r.now, r.img.Created) }
func (r imageRow) CreatedAt() string    { return time.Unix(r.img.Created, 0).String() }
func (r imageRow) Size() string         { return humanSize(r.img.Size) }
func (r imageRow) VirtualSize() string  { return units.HumanSize(float64(r.img.Size)) } // docker: 4 digits
func (r imageRow) Containers() string {
	if r.img.Containers < 0 {
		return "N/A"
	}
	return strconv.FormatInt(r.img.Containers, 10)
}
func (r imageRow) SharedSize() string {
	if r.img.SharedSize < 0 {
		return "N/A"
	}
	return humanSize(r.img.SharedSize)
}
func (r imageRow) UniqueSize() string {
	if r.img.SharedSize < 0 {
		return "N/A"
	}
	return humanSize(r.img.Size - r.img.SharedSize)
}

// MarshalJSON gives the row's fields as docker's `{{json .}}` does.
func (r imageRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"Containers": r.Containers(), "CreatedAt": r.CreatedAt(), "CreatedSince": r.CreatedSince(),
		"Digest": r.Digest(), "ID": r.ID(), "Repository": r.Repository(), "SharedSize": r.SharedSize(),
		"Size": r.Size(), "Tag": r.Tag(), "UniqueSize": r.UniqueSize(), "VirtualSize": r.VirtualSize(),
	})
}

// imageRows expands images into rows the way docker does: one row per repository:tag, a
// "<none>" tag for digest-only references, and "<none> <none>" for an untagged image.
func imageRows(imgs []image.Summary, trunc bool, now time.Time) []imageRow {
	imgs = slices.Clone(imgs)
	sort.SliceStable(imgs, func(i, j int) bool { return imgs[i].Created > imgs[j].Created })
	var rows []imageRow
	for _, img := range imgs {
		tags := map[string][]string{}
		digests := map[string][]string{}
		var repos []string
		addRepo := func(name string) {
			if !slices.Contains(repos, name) {
				repos = append(repos, name)
			}
		}
		for _, rt := range img.RepoTags {
			ref, err := reference.ParseNormalizedNamed(rt)
			if err != nil {
				continue
			}
			name := reference.FamiliarName(ref)
			addRepo(name)
			if t, ok := ref.(reference.Tagged); ok {
				tags[name] = append(tags[name], t.Tag())
			}
		}
		for _, rd := range img.RepoDigests {
			ref, err := reference.ParseNormalizedNamed(rd)
			if err != nil {
				continue
			}
			name := reference.FamiliarName(ref)
			addRepo(name)
			if d, ok := ref.(reference.Digested); ok {
				digests[name] = append(digests[name], d.Digest().String())
			}
		}
		if len(repos) == 0 {
			rows = append(rows, imageRow{img: img, repo: none, tag: none, digest: none, trunc: trunc, now: now})
			continue
		}
		sort.Strings(repos)
		for _, repo := range repos {
			digest := none
			if d := digests[repo]; len(d) > 0 {
				digest = d[0]
			}
			ts := tags[repo]
			sort.Strings(ts)
			if len(ts) == 0 {
				ts = []string{none}
			}
			for _, t := range ts {
				rows = append(rows, imageRow{img: img, repo: repo, tag: t, digest: digest, trunc: trunc, now: now})
			}
		}
	}
	return rows
}

// historyRow is one line of `berth history`.
type historyRow struct {
	h     image.HistoryResponseItem
	trunc bool
	human bool
	now   time.Time
}

func (r historyRow) ID() string {
	if r.trunc && strings.HasPrefix(r.h.ID, "sha256:") {
		return truncateID(r.h.ID)
	}
	return r.h.ID
}
func (r historyRow) CreatedAt() string { return time.Unix(r.h.Created, 0).Format(time.RFC3339) }
func (r historyRow) CreatedSince() string {
	if !r.human {
		return r.CreatedAt()
	}
	return humanDuration(r.now, r.h.Created)
}
func (r historyRow) CreatedBy() string {
	s := strings.ReplaceAll(r.h.CreatedBy, "\t", " ")
	if r.trunc {
		return ellipsis(s, historyCreatedByWidth)
	}
	return s
}
func (r historyRow) Size() string {
	if r.human {
		return humanSize(r.h.Size)
	}
	return strconv.FormatInt(r.h.Size, 10)
}
func (r historyRow) Comment() string { return r.h.Comment }

func (r historyRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"Comment": r.Comment(), "CreatedAt": r.CreatedAt(), "CreatedBy": r.CreatedBy(),
		"CreatedSince": r.CreatedSince(), "ID": r.ID(), "Size": r.Size(),
	})
}

// rfc3339NanoFixed is time.RFC3339Nano with a fixed-width fraction, as docker prints events.
const rfc3339NanoFixed = "2006-01-02T15:04:05.000000000Z07:00"

// eventLine is docker's default rendering of an event:
// "2024-01-02T03:04:05.000000000Z image tag sha256:… (name=busybox:latest)".
func eventLine(m events.Message) string {
	var b strings.Builder
	if m.TimeNano != 0 {
		b.WriteString(time.Unix(0, m.TimeNano).Format(rfc3339NanoFixed))
	} else if m.Time != 0 {
		b.WriteString(time.Unix(m.Time, 0).Format(rfc3339NanoFixed))
	}
	fmt.Fprintf(&b, " %s %s %s", m.Type, m.Action, m.Actor.ID)
	if len(m.Actor.Attributes) > 0 {
		keys := make([]string, 0, len(m.Actor.Attributes))
		for k := range m.Actor.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := make([]string, len(keys))
		for i, k := range keys {
			attrs[i] = k + "=" + m.Actor.Attributes[k]
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(attrs, ", "))
	}
	return b.String()
}
