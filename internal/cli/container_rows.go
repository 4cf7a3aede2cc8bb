package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

const defaultPsFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedSince}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

var psHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedSince": "CREATED",
	"CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
	"Size": "SIZE", "Labels": "LABELS", "State": "STATE", "Networks": "NETWORKS", "Mounts": "MOUNTS",
	"RunningFor": "CREATED", "LocalVolumes": "LOCAL VOLUMES",
}

// psRow is one `ps` line; its methods are the template fields docker offers.
type psRow struct {
	s     container.Summary
	trunc bool
	now   time.Time
}

func (r psRow) ID() string {
	if r.trunc && len(r.s.ID) > 12 {
		return r.s.ID[:12]
	}
	return r.s.ID
}
func (r psRow) Image() string { return r.s.Image }
func (r psRow) Command() string {
	cmd := strconv.Quote(r.s.Command)
	if r.trunc {
		cmd = strconv.Quote(ellipsis(r.s.Command, 20))
	}
	return cmd
}
func (r psRow) CreatedSince() string { return humanDuration(r.now, r.s.Created) }
func (r psRow) RunningFor() string   { return r.CreatedSince() }
func (r psRow) CreatedAt() string    { return time.Unix(r.s.Created, 0).String() }
func (r psRow) Status() string       { return r.s.Status }
func (r psRow) State() string        { return string(r.s.State) }
func (r psRow) Names() string {
	names := make([]string, 0, len(r.s.Names))
	for _, n := range r.s.Names {
		names = append(names, strings.TrimPrefix(n, "/"))
	}
	return strings.Join(names, ",")
}
func (r psRow) Ports() string {
	var out []string
	for _, p := range r.s.Ports {
		if p.PublicPort != 0 {
			out = append(out, fmt.Sprintf("%s:%d->%d/%s", p.IP, p.PublicPort, p.PrivatePort, p.Type))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.PrivatePort, p.Type))
		}
	}
	return strings.Join(out, ", ")
}
func (r psRow) Size() string {
	if r.s.SizeRw == 0 && r.s.SizeRootFs == 0 {
		return "0B"
	}
	return fmt.Sprintf("%s (virtual %s)", humanSize(r.s.SizeRw), humanSize(r.s.SizeRootFs))
}
func (r psRow) Labels() string {
	var out []string
	for _, k := range sortedKeys(r.s.Labels) {
		out = append(out, k+"="+r.s.Labels[k])
	}
	return strings.Join(out, ",")
}
func (r psRow) Label(name string) string { return r.s.Labels[name] }
func (r psRow) Networks() string {
	var out []string
	if r.s.NetworkSettings != nil {
		for n := range r.s.NetworkSettings.Networks {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
func (r psRow) Mounts() string { return "" }

func (r psRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": r.ID(), "Image": r.Image(), "Command": r.Command(), "CreatedAt": r.CreatedAt(),
		"RunningFor": r.RunningFor(), "Status": r.Status(), "State": r.State(), "Ports": r.Ports(),
		"Names": r.Names(), "Labels": r.Labels(), "Networks": r.Networks(), "Mounts": r.Mounts(),
		"Size": r.Size(), "LocalVolumes": "0",
	})
}

func (c *cli) newPsCommand(use string) *cobra.Command {
	var (
		all, quiet, noTrunc, latest, size bool
		last                              int
		filters                           []string
		format                            string
	)
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List containers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			if latest {
				last = 1
			}
			if last > 0 {
				all = true
			}
			res, err := cl.ContainerList(cmd.Context(), client.ContainerListOptions{All: all, Limit: last, Size: size, Filters: client.Filters(f)})
			if err != nil {
				return err
			}
			if format == "" || format == "table" {
				format = defaultPsFormat
				if size {
					format += "\t{{.Size}}"
				}
			}
			if quiet {
				format = "{{.ID}}"
			}
			now := time.Now()
			rows := make([]any, len(res.Items))
			for i, s := range res.Items {
				rows[i] = psRow{s: s, trunc: !noTrunc, now: now}
			}
			return listFormat{format: format, headers: psHeaders}.write(c.out, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display container IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	fl.BoolVarP(&latest, "latest", "l", false, "Show the latest created container (includes all states)")
	fl.IntVarP(&last, "last", "n", -1, "Show n last created containers (includes all states)")
	fl.BoolVarP(&size, "size", "s", false, "Display total file sizes")
	listVarP(fl, &filters, "filter", "f", nil, "Filter output based on conditions provided")
	fl.StringVar(&format, "format", "", "Format output using a custom template:\n'table':            Print output in table format with column headers (default)\n'table TEMPLATE':   Print output in table format using the given Go template\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template")
	return cmd
}

const defaultStatsFormat = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

var statsHeaders = map[string]string{
	"ID": "CONTAINER ID", "Name": "NAME", "Container": "CONTAINER", "CPUPerc": "CPU %",
	"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
	"PIDs": "PIDS",
}

type statsRow struct {
	s  container.StatsResponse
	id string
}

func (r statsRow) ID() string {
	if len(r.s.ID) > 12 {
		return r.s.ID[:12]
	}
	return r.s.ID
}
func (r statsRow) Name() string      { return strings.TrimPrefix(r.s.Name, "/") }
func (r statsRow) Container() string { return r.id }

// CPUPerc is docker's formula: container CPU delta over system CPU delta, times online CPUs.
func (r statsRow) CPUPerc() string {
	cpuDelta := float64(r.s.CPUStats.CPUUsage.TotalUsage) - float64(r.s.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(r.s.CPUStats.SystemUsage) - float64(r.s.PreCPUStats.SystemUsage)
	pct := 0.0
	if sysDelta > 0 && cpuDelta > 0 {
		n := float64(r.s.CPUStats.OnlineCPUs)
		if n == 0 {
			n = 1
		}
		pct = cpuDelta / sysDelta * n * 100
	}
	return fmt.Sprintf("%.2f%%", pct)
}
func (r statsRow) MemUsage() string {
	return units.BytesSize(float64(r.s.MemoryStats.Usage)) + " / " + units.BytesSize(float64(r.s.MemoryStats.Limit))
}
func (r statsRow) MemPerc() string {
	if r.s.MemoryStats.Limit == 0 {
		return "0.00%"
	}
	return fmt.Sprintf("%.2f%%", float64(r.s.MemoryStats.Usage)/float64(r.s.MemoryStats.Limit)*100)
}
func (r statsRow) NetIO() string {
	var rx, tx uint64
	for _, n := range r.s.Networks {
		rx += n.RxBytes
		tx += n.TxBytes
	}
	return units.HumanSizeWithPrecision(float64(rx), 3) + " / " + units.HumanSizeWithPrecision(float64(tx), 3)
}
func (r statsRow) BlockIO() string { return "0B / 0B" }
func (r statsRow) PIDs() string    { return strconv.FormatUint(r.s.PidsStats.Current, 10) }

func (r statsRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": r.ID(), "Name": r.Name(), "Container": r.Container(), "CPUPerc": r.CPUPerc(),
		"MemUsage": r.MemUsage(), "MemPerc": r.MemPerc(), "NetIO": r.NetIO(), "BlockIO": r.BlockIO(), "PIDs": r.PIDs(),
	})
}

func newTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 10, 1, 3, ' ', 0) }

func stdcopyTo(out, errw io.Writer, r io.Reader) (int64, error) { return stdcopy.StdCopy(out, errw, r) }

func (c *cli) newContainerInspectCommand() *cobra.Command {
	var format string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.inspectObjects(cmd, args, format, "container", size)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "Display total file sizes")
	return cmd
}
