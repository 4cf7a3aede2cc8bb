package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth/internal/sched"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

// NewCommand returns the `sim` command with its `planetlab` and `scale`
// subcommands. It needs no daemon.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the scheduler in a simulator (no daemon needed)",
		Long: "Run berth's scheduler (internal/sched) against simulated hosts: a trace-driven\n" +
			"reproduction of the CloudSim PlanetLab consolidation benchmark, or a synthetic\n" +
			"placement-throughput test.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newPlanetLabCommand(), newScaleCommand())
	return cmd
}

func checkFormat(f string) error {
	if f != "json" && f != "table" {
		return fmt.Errorf("--format %q: want json or table: %w", f, errdefs.ErrInvalidArgument)
	}
	return nil
}

func newPlanetLabCommand() *cobra.Command {
	var trace, policy, format string
	var seed uint64
	var keepIdle bool
	var tickOffset float64
	cmd := &cobra.Command{
		Use:   "planetlab --trace DIR --policy NAME [--format json|table]",
		Short: "Simulate one PlanetLab day on the CloudSim 800-host setup",
		Long: "Simulate one day of PlanetLab traces (a folder with one file per VM of 288\n" +
			"utilisation percentages) on CloudSim's setup: 800 hosts (HP ML110 G4/G5),\n" +
			"four VM types, 300 s scheduling interval, 24 h. As in CloudSim, a VM is\n" +
			"destroyed the first time it asks for no CPU (--keep-idle-vms keeps it);\n" +
			"--tick-offset 0.1 reads the traces 0.1 s after each sample point, as\n" +
			"CloudSim 3.0.3 does (the default, 0, reproduces CCPE12 Table V).\n\n" +
			"Policies: npa, dvfs, berth, or DETECTOR-SELECTION-PARAM with detector\n" +
			"thr|iqr|mad|lr|lrr|ols and selection mmt|mu|mc|rs, e.g. thr-mmt-0.8,\n" +
			"iqr-mmt-1.5, mad-mmt-2.5, lrr-mmt-1.2, lr-mmt-1.2.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if trace == "" {
				return fmt.Errorf("--trace is required: pass the folder of one day's traces, e.g. --trace data/planetlab/20110303: %w", errdefs.ErrInvalidArgument)
			}
			if policy == "" {
				return fmt.Errorf("--policy is required: e.g. --policy lr-mmt-1.2 or --policy berth: %w", errdefs.ErrInvalidArgument)
			}
			if err := checkFormat(format); err != nil {
				return err
			}
			pol, err := ParsePolicy(policy, seed)
			if err != nil {
				return err
			}
			pol.KeepIdleVMs = keepIdle
			if !(tickOffset >= 0 && tickOffset < Interval) { // also rejects NaN
				return fmt.Errorf("--tick-offset %v: want seconds in [0, %g), e.g. 0.1 for CloudSim 3.0.3: %w",
					tickOffset, Interval, errdefs.ErrInvalidArgument)
			}
			pol.TickOffset = tickOffset
			traces, err := LoadDay(trace)
			if err != nil {
				return err
			}
			res, err := RunPlanetLab(traces, pol)
			if err != nil {
				return err
			}
			return WritePlanetLab(cmd.OutOrStdout(), format, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&trace, "trace", "", "folder with one trace file per VM (288 lines each)")
	f.StringVar(&policy, "policy", "", "policy name: npa, dvfs, berth, or e.g. lr-mmt-1.2")
	f.StringVar(&format, "format", "json", "output format: json or table")
	f.Uint64Var(&seed, "seed", 1, "seed for random choices (RS selection)")
	f.BoolVar(&keepIdle, "keep-idle-vms", false, "keep VMs whose CPU demand drops to 0 (CloudSim destroys them)")
	f.Float64Var(&tickOffset, "tick-offset", 0, "seconds after each sample point at which ticks read the traces (0.1: CloudSim 3.0.3)")
	return cmd
}

// planetLabJSON is the exact output shape of `berth sim planetlab`.
type planetLabJSON struct {
	EnergyKWh  float64 `json:"energy_kwh"`
	SLATAH     float64 `json:"slatah"`
	PDM        float64 `json:"pdm"`
	SLAV       float64 `json:"slav"`
	ESV        float64 `json:"esv"`
	Migrations int     `json:"migrations"`
	Hosts      int     `json:"hosts"`
	VMs        int     `json:"vms"`
}

// WritePlanetLab prints a result as one JSON object or as a row in the
// columns of CCPE12 Table V.
func WritePlanetLab(w io.Writer, format string, r Result) error {
	m := r.Metrics
	if format == "json" {
		b, err := json.Marshal(planetLabJSON{m.EnergyKWh, m.SLATAH, m.PDM, m.SLAV, m.ESV, m.Migrations, r.Hosts, r.VMs})
		if err != nil {
			return fmt.Errorf("encoding result: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Policy\tESV (x1e-3)\tEnergy (kWh)\tSLAV (x1e-5)\tSLATAH\tPDM\tVM migr. (x1e3)\t")
	fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f%%\t%.2f%%\t%.2f\t\n", strings.ToUpper(r.Policy),
		m.ESV*1e3, m.EnergyKWh, m.SLAV*1e5, m.SLATAH*100, m.PDM*100, float64(m.Migrations)/1e3)
	return tw.Flush()
}

func newScaleCommand() *cobra.Command {
	var nodes, tasks, limit int
	var format, scoring string
	var seed uint64
	var threshold float64
	cmd := &cobra.Command{
		Use:   "scale --nodes N --tasks M [--format json|table]",
		Short: "Measure placement throughput: M mixed tasks onto N heterogeneous hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			sc, err := parseScoring(scoring)
			if err != nil {
				return err
			}
			if threshold <= 0 {
				return fmt.Errorf("--admission-threshold %g: must be greater than 0: %w", threshold, errdefs.ErrInvalidArgument)
			}
			cfg := ScaleConfig{Nodes: nodes, Tasks: tasks, Seed: seed,
				Policy: sched.PlacePolicy{Scoring: sc, Limit: limit, Seed: seed, AdmissionThreshold: threshold}}
			out, err := measureScale(cfg)
			if err != nil {
				return err
			}
			return writeScale(cmd.OutOrStdout(), format, out)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 5000, "number of simulated hosts")
	f.IntVar(&tasks, "tasks", 1000000, "number of tasks to place")
	f.StringVar(&format, "format", "json", "output format: json or table")
	f.StringVar(&scoring, "scoring", "binpack", "ranking: binpack, spread or power")
	f.IntVar(&limit, "limit", 0, "feasible candidates scored per placement (0: default, -1: all)")
	f.Float64Var(&threshold, "admission-threshold", sched.DefaultAdmissionThreshold, "projected cluster load above which tasks are refused")
	f.Uint64Var(&seed, "seed", 1, "seed for host shapes, task mix and host order")
	return cmd
}

func parseScoring(s string) (sched.Scoring, error) {
	switch s {
	case "binpack":
		return sched.BinPack, nil
	case "spread":
		return sched.Spread, nil
	case "power":
		return sched.PowerAware, nil
	}
	return 0, fmt.Errorf("--scoring %q: want binpack, spread or power: %w", s, errdefs.ErrInvalidArgument)
}

// ScaleOutput is the exact output shape of `berth sim scale`.
type ScaleOutput struct {
	PlacementsPerSec float64 `json:"placements_per_sec"`
	P99PlacementUS   float64 `json:"p99_placement_us"`
	Unplaced         int     `json:"unplaced"`
	PeakRSSMB        float64 `json:"peak_rss_mb"`
}

type wallTimer struct{ base time.Time }

func (t wallTimer) Start() int64           { return int64(time.Since(t.base)) }
func (t wallTimer) Stop(start int64) int64 { return int64(time.Since(t.base)) - start }

func measureScale(cfg ScaleConfig) (ScaleOutput, error) {
	if cfg.Tasks < 0 || cfg.Nodes < 1 || cfg.Tasks > MaxScaleTasks || cfg.Nodes > MaxScaleNodes {
		_, err := RunScale(cfg, nil, nil)
		return ScaleOutput{}, err
	}
	lat := make([]int64, cfg.Tasks)
	begin := time.Now()
	st, err := RunScale(cfg, wallTimer{base: begin}, lat)
	elapsed := time.Since(begin)
	if err != nil {
		return ScaleOutput{}, err
	}
	out := ScaleOutput{Unplaced: cfg.Tasks - st.Placed}
	if elapsed > 0 {
		out.PlacementsPerSec = float64(cfg.Tasks) / elapsed.Seconds()
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		out.P99PlacementUS = float64(lat[(len(lat)*99)/100]) / 1e3
	}
	rss, err := peakRSSMB()
	if err != nil {
		return ScaleOutput{}, err
	}
	out.PeakRSSMB = rss
	return out, nil
}

// peakRSSMB reads VmHWM (peak resident set size) from /proc/self/status.
func peakRSSMB() (float64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading peak RSS: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmHWM:") {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, "VmHWM:"))
		if len(fields) < 1 {
			break
		}
		kb, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("parsing VmHWM %q: %w", line, err)
		}
		return kb / 1024, nil
	}
	return 0, fmt.Errorf("no VmHWM line in /proc/self/status")
}

func writeScale(w io.Writer, format string, o ScaleOutput) error {
	if format == "json" {
		b, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("encoding result: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "placements/s\tp99 placement (us)\tunplaced\tpeak RSS (MB)\t")
	fmt.Fprintf(tw, "%.0f\t%.1f\t%d\t%.1f\t\n", o.PlacementsPerSec, o.P99PlacementUS, o.Unplaced, o.PeakRSSMB)
	return tw.Flush()
}
