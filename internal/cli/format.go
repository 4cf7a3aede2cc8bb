package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/docker/go-units"
)

// templateFuncs are the functions docker's --format templates offer.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		r, n := utf8.DecodeRuneInString(s)
		return strings.ToUpper(string(r)) + s[n:]
	},
	"pad": func(s string, left, right int) string {
		return strings.Repeat(" ", left) + s + strings.Repeat(" ", right)
	},
	"truncate": func(s string, n int) string {
		if n < 0 || utf8.RuneCountInString(s) <= n {
			return s
		}
		return string([]rune(s)[:n])
	},
	"println": fmt.Sprintln,
}

// parseTemplate parses a Go template with docker's functions; errors name the template.
func parseTemplate(format string) (*template.Template, error) {
	t, err := template.New("").Funcs(templateFuncs).Option("missingkey=zero").Parse(format)
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	return t, nil
}

// listFormat renders rows of a listing (images, history) the way docker's formatter does:
// "table ..." templates get a header row and aligned columns, "json" prints one JSON object per
// row, any other template is executed per row. headers maps a field name to its column title.
type listFormat struct {
	format  string
	headers map[string]string
}

// write renders rows (values whose exported methods and fields the template reads).
func (lf listFormat) write(out io.Writer, rows []any) error {
	format := lf.format
	if format == "json" {
		for _, r := range rows {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
				return err
			}
		}
		return nil
	}
	table := false
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		table = true
		format = strings.TrimLeft(rest, " ")
	}
	// Docker expands the escaped forms of tabs and newlines typed on a command line.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := parseTemplate(format + "\n")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if table {
		if err := tmpl.Execute(&buf, lf.headers); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	for _, r := range rows {
		if err := tmpl.Execute(&buf, r); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	if !table {
		_, err := out.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
	if _, err := tw.Write(buf.Bytes()); err != nil {
		return err
	}
	return tw.Flush()
}

// humanDuration is docker's "2 hours ago" for a Unix time.
func humanDuration(now time.Time, unix int64) string {
	if unix <= 0 {
		return "N/A"
	}
	return units.HumanDuration(now.Sub(time.Unix(unix, 0))) + " ago"
}

// humanSize is docker's size column: three significant digits, decimal units.
func humanSize(n int64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// truncateID shortens an image or container ID to docker's 12 hex digits, without "sha256:".
func truncateID(id string) string {
	if i := strings.IndexRune(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// ellipsis shortens s to at most n characters, marking the cut with "…" as docker does.
func ellipsis(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return string([]rune(s)[:n])
	}
	return string([]rune(s)[:n-1]) + "…"
}

// parseFilterFlags turns repeated --filter key=value flags into API filters.
func parseFilterFlags(flags []string) (map[string]map[string]bool, error) {
	f := map[string]map[string]bool{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value)")
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if f[k] == nil {
			f[k] = map[string]bool{}
		}
		f[k][strings.TrimSpace(v)] = true
	}
	return f, nil
}
