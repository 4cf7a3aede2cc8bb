package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/sched"
	"github.com/containerd/errdefs"
)

func traceText(vals []int) string {
	var b strings.Builder
	for _, v := range vals {
		fmt.Fprintf(&b, "%d\n", v)
	}
	return b.String()
}

// syntheticDay writes n trace files with a daily wave plus noise.
func syntheticDay(t *testing.T, n int, seed uint64) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := 0; i < n; i++ {
		base := rng.Float64() * 30
		vals := make([]int, SamplesPerDay)
		for j := range vals {
			v := base + 20*math.Sin(float64(j)/288*2*math.Pi+float64(i)) + rng.Float64()*25
			vals[j] = int(min(max(v, 0), 99))
		}
		name := fmt.Sprintf("vm %03d", i) // a space, like the real data
		if err := os.WriteFile(filepath.Join(dir, name), []byte(traceText(vals)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseTrace(t *testing.T) {
	vals := make([]int, SamplesPerDay)
	for i := range vals {
		vals[i] = i % 101
	}
	good := traceText(vals)
	tr, err := ParseTrace("a", []byte(good))
	if err != nil || tr.Samples[100] != 100 || tr.Samples[287] != 287%101 {
		t.Fatalf("good trace: %v %v", err, tr.Samples[:3])
	}
	// No final newline, and CRLF line endings, are fine.
	if _, err := ParseTrace("a", []byte(strings.TrimSuffix(good, "\n"))); err != nil {
		t.Errorf("no final newline: %v", err)
	}
	if _, err := ParseTrace("a", []byte(strings.ReplaceAll(good, "\n", "\r\n"))); err != nil {
		t.Errorf("CRLF: %v", err)
	}
	for name, text := range map[string]string{
		"287 lines":    traceText(vals[:287]),
		"289 lines":    good + "5\n",
		"not a number": strings.Replace(good, "7\n", "x\n", 1),
		"over 100":     strings.Replace(good, "7\n", "101\n", 1),
		"negative":     strings.Replace(good, "7\n", "-1\n", 1),
		"empty":        "",
	} {
		_, err := ParseTrace("f", []byte(text))
		if err == nil || !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
	}
	_, err = ParseTrace("f", []byte(traceText(vals[:287])))
	if !strings.Contains(err.Error(), "287 lines") || !strings.Contains(err.Error(), "exactly 288") {
		t.Errorf("line-count message unclear: %v", err)
	}
}

func TestLoadDayErrors(t *testing.T) {
	_, err := LoadDay(filepath.Join(t.TempDir(), "nope"))
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "--trace") {
		t.Errorf("missing dir: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := LoadDay(f); !errdefs.IsInvalidArgument(err) {
		t.Errorf("file as dir: %v", err)
	}
	if _, err := LoadDay(t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty dir: %v", err)
	}
	dir := syntheticDay(t, 3, 1)
	os.WriteFile(filepath.Join(dir, "short"), []byte("1\n2\n"), 0o644)
	if _, err := LoadDay(dir); err == nil || !strings.Contains(err.Error(), `"short"`) {
		t.Errorf("bad file not named: %v", err)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, n := range []string{"npa", "dvfs", "berth", "thr-mmt-0.8", "iqr-mmt-1.5", "mad-mmt-2.5",
		"lrr-mmt-1.2", "lr-mmt-1.2", "lr-mc-1.3", "thr-rs-1.0", "ols-mu-1.2", "LR-MMT-1.2"} {
		if _, err := ParsePolicy(n, 1); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	for _, n := range []string{"", "lr", "lr-mmt", "lr-mmt-x", "foo-mmt-1", "lr-foo-1", "thr-mmt-1.5", "lr-mmt-1-2", "lr-mmt-nan", "mad-mmt-inf", "thr-mmt-0"} {
		_, err := ParsePolicy(n, 1)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "--policy") {
			t.Errorf("%q: %v", n, err)
		}
	}
}

func run(t *testing.T, dir, policy string) Result {
	t.Helper()
	traces, err := LoadDay(dir)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ParsePolicy(policy, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunPlanetLab(traces, pol)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNPAEnergy(t *testing.T) {
	// (400 × 117 W + 400 × 135 W) × 24 h = 2419.2 kWh, whatever the load.
	r := run(t, syntheticDay(t, 20, 2), "npa")
	if math.Abs(r.Metrics.EnergyKWh-2419.2) > 1e-9 || r.Metrics.Migrations != 0 || r.Hosts != 800 || r.VMs != 20 {
		t.Fatalf("NPA: %+v", r)
	}
}

func TestSimulationIsDeterministic(t *testing.T) {
	dir := syntheticDay(t, 120, 3)
	for _, p := range []string{"dvfs", "thr-rs-0.8", "lr-mmt-1.2", "berth"} {
		a, b := run(t, dir, p), run(t, dir, p)
		if a != b {
			t.Errorf("%s: %+v != %+v", p, a, b)
		}
		if p == "dvfs" && (a.Metrics.Migrations != 0 || a.Metrics.EnergyKWh <= 0 || a.Metrics.EnergyKWh >= 2419.2) {
			t.Errorf("dvfs: %+v", a.Metrics)
		}
		if p != "dvfs" && a.Metrics.Migrations == 0 {
			t.Errorf("%s made no migrations", p)
		}
	}
}

func TestUtilInterpolation(t *testing.T) {
	var v simVM
	v.data[0], v.data[1] = 0.1, 0.4
	if got := v.utilAt(0); got != 0.1 {
		t.Errorf("at 0: %v", got)
	}
	if got := v.utilAt(100); math.Abs(got-0.2) > 1e-12 {
		t.Errorf("at 100: %v, want 0.2", got)
	}
	if got := v.utilAt(300); got != 0.4 {
		t.Errorf("at 300: %v", got)
	}
}

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestPlanetLabCommand(t *testing.T) {
	dir := syntheticDay(t, 30, 4)
	out, err := execute(t, "planetlab", "--trace", dir, "--policy", "thr-mmt-0.8", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"energy_kwh", "esv", "hosts", "migrations", "pdm", "slatah", "slav", "vms"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	out, err = execute(t, "planetlab", "--trace", dir, "--policy", "dvfs", "--format", "table")
	if err != nil || !strings.Contains(out, "SLATAH") || !strings.Contains(out, "DVFS") {
		t.Fatalf("table: %v %q", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"planetlab", "--policy", "npa"}, "--trace is required"},
		{[]string{"planetlab", "--trace", dir}, "--policy is required"},
		{[]string{"planetlab", "--trace", dir, "--policy", "xyz"}, `--policy "xyz"`},
		{[]string{"planetlab", "--trace", dir, "--policy", "npa", "--format", "xml"}, `--format "xml"`},
		{[]string{"planetlab", "--trace", dir + "/missing", "--policy", "npa"}, "no such directory"},
	} {
		_, err := execute(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestScale(t *testing.T) {
	cfg := ScaleConfig{Nodes: 50, Tasks: 20000, Seed: 1, Policy: sched.PlacePolicy{Seed: 1}}
	a, err := RunScale(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RunScale(cfg, nil, nil)
	if a != b || a.Placed+a.Refused+a.NoFit+a.Queued != cfg.Tasks {
		t.Fatalf("%+v vs %+v", a, b)
	}
	// 20000 tasks averaging 0.22 cores overfill 50 hosts: admission control
	// must refuse some, and nothing may be placed beyond 80% of the cluster.
	if a.Refused == 0 {
		t.Fatalf("expected refusals: %+v", a)
	}
	out, err := execute(t, "scale", "--nodes", "20", "--tasks", "1000")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]float64
	if err := json.Unmarshal([]byte(out), &m); err != nil || len(m) != 4 || m["placements_per_sec"] <= 0 || m["peak_rss_mb"] <= 0 {
		t.Fatalf("%v %q", err, out)
	}
	if _, err := execute(t, "scale", "--nodes", "0"); err == nil || !strings.Contains(err.Error(), "--nodes") {
		t.Fatalf("nodes 0: %v", err)
	}
}

func FuzzParseTrace(f *testing.F) {
	f.Add([]byte(traceText(make([]int, SamplesPerDay))))
	f.Add([]byte("1\n2\n3"))
	f.Add([]byte("\r\n\n  7 \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTrace("f", data)
		if err == nil {
			for _, s := range tr.Samples {
				if s > 100 {
					t.Fatalf("sample %d accepted", s)
				}
			}
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"npa", "lr-mmt-1.2", "thr-rs-0.8", "x-y-z", "--", "mad-mc-NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s, 1)
		if err == nil && p.Kind == Migration && (p.Consolidation.Detector == nil || p.Consolidation.Selector == nil) {
			t.Fatalf("%q parsed without detector or selector", s)
		}
	})
}

func TestDVFSOneVMByHand(t *testing.T) {
	// One 2500-MIPS VM at a constant 50%: it cannot go on a G4 (1860-MIPS
	// cores), so first fit puts it on host 1, a G5 (5320 MIPS). Utilisation
	// 1250/5320 = 0.23496; P = 101 + 0.4·(23.496 − 20) = 102.3985 W from the
	// first tick (300 s) to the end of the day: nothing is metered before the
	// first tick, so the first interval starts from utilisation 0 and adds
	// nothing, as in CloudSim.
	dir := t.TempDir()
	vals := make([]int, SamplesPerDay)
	for i := range vals {
		vals[i] = 50
	}
	os.WriteFile(filepath.Join(dir, "only"), []byte(traceText(vals)), 0o644)
	r := run(t, dir, "dvfs")
	u := 1250.0 / 5320
	want := (101 + 0.4*(u*100-20)) * (86400 - 300) / 3.6e6
	if math.Abs(r.Metrics.EnergyKWh-want) > 1e-9 || r.Metrics.SLATAH != 0 {
		t.Fatalf("energy %v kWh, want %v; %+v", r.Metrics.EnergyKWh, want, r.Metrics)
	}
}

// TestOneMigrationByHand follows three VMs through a THR-MMT-0.8 day.
// There are 3 files, so block = 1: VM 0 is type 0 (2500 MIPS, 870 MB) at a
// constant 20%, VM 1 type 1 (2000 MIPS, 1740 MB) at 10%, VM 2 type 2 (1000
// MIPS, 1740 MB) at 10%. At creation no host has been metered, so PABFD's
// power difference does not depend on what a host already holds: every VM
// goes to the first suitable host of the cheaper type, a G5 (G4 cores are too
// small for VMs 0 and 1, and 1000 MIPS costs 6.8 W on a G5 against 9.0 W on
// a G4). VMs 0 and 1 share host 1; VM 2 no longer fits there (820 MIPS
// left) and goes to host 3. At t = 300 the underload phase empties host 3:
// VM 2 (100 MIPS) moves to host 1, the only active host left, in
// 1740/62.5 = 27.84 s. After that nothing moves again.
func TestOneMigrationByHand(t *testing.T) {
	dir := t.TempDir()
	for name, u := range map[string]int{"a": 20, "b": 10, "c": 10} {
		vals := make([]int, SamplesPerDay)
		for i := range vals {
			vals[i] = u
		}
		os.WriteFile(filepath.Join(dir, name), []byte(traceText(vals)), 0o644)
	}
	r := run(t, dir, "thr-mmt-0.8")
	m := r.Metrics
	const mt = 1740 / 62.5
	const day = 86400 - 300 // metered time: from the first tick on
	if m.Migrations != 1 {
		t.Fatalf("migrations = %d, want 1", m.Migrations)
	}
	// PDM: 10% of 100 MIPS for 27.84 s over (500 + 200 + 100) MIPS.
	if want := 10 * mt / (800 * day); math.Abs(m.PDM-want) > 1e-15 {
		t.Errorf("PDM = %v, want %v", m.PDM, want)
	}
	// SLATAH: host 1 asks for 800 but gets 700 + 10 during the migration;
	// host 3 is active until the VM leaves.
	if want := mt / (day + mt); math.Abs(m.SLATAH-want) > 1e-15 {
		t.Errorf("SLATAH = %v, want %v", m.SLATAH, want)
	}
	// Energy, G5 table: P(u) = 93.7 + 33u below 10%, 97 + 40(u − 0.1) to 20%.
	// The first interval adds nothing (no host was metered at time 0).
	p := func(mips float64) float64 {
		u := mips / 5320
		if u <= 0.1 {
			return 93.7 + 33*u
		}
		return 97 + 40*(u-0.1)
	}
	j := p(710)*mt + p(100)*mt + p(800)*(day-mt)
	if want := j / 3.6e6; math.Abs(m.EnergyKWh-want) > 1e-9 {
		t.Errorf("energy = %v kWh, want %v", m.EnergyKWh, want)
	}
}

// TestIdleVMDestroyedByHand: CloudSim deallocates a VM for good at the first
// update where it asks for 0 MIPS. One 2500-MIPS VM at 50% goes on a G5
// (first fit: host 1); samples 50, 100 and 101 are 0. With ticks at the
// sample points (the default) the VM is destroyed at t = 15000. With
// CloudSim 3.0.3's ticks 0.1 s later, sample 50 alone leaves a trickle of
// demand (0.1/300 of the way to sample 51) and the VM lasts until the two
// zeros at t = 30000. Either way its host draws nothing afterwards.
func TestIdleVMDestroyedByHand(t *testing.T) {
	dir := t.TempDir()
	vals := make([]int, SamplesPerDay)
	for i := range vals {
		vals[i] = 50
	}
	vals[50], vals[100], vals[101] = 0, 0, 0
	os.WriteFile(filepath.Join(dir, "only"), []byte(traceText(vals)), 0o644)
	traces, err := LoadDay(dir)
	if err != nil {
		t.Fatal(err)
	}
	g5 := func(mips float64) float64 { // G5 table below 10% and from 20% to 30%
		u := mips / 5320
		if u < 0.1 {
			return 93.7 + 33*u
		}
		return 101 + 40*(u-0.2)
	}
	for _, tc := range []struct {
		offset float64
		last   int // tick at which the VM is destroyed
	}{{0, 50}, {CloudSim303TickOffset, 100}} {
		pol, _ := ParsePolicy("dvfs", 1)
		pol.TickOffset = tc.offset
		r, err := RunPlanetLab(traces, pol)
		if err != nil {
			t.Fatal(err)
		}
		if r.Destroyed != 1 {
			t.Fatalf("offset %v: destroyed = %d, want 1", tc.offset, r.Destroyed)
		}
		demand := func(k int) float64 { // read tc.offset seconds after tick k
			a, b := float64(vals[k])/100, float64(vals[min(k+1, SamplesPerDay-1)])/100
			return (a + (b-a)*tc.offset/300) * 2500
		}
		var j float64
		for k := 1; k < tc.last; k++ { // intervals [k, k+1] with k+1 ≤ last
			j += (g5(demand(k)) + g5(demand(k+1))) / 2 * 300
		}
		if want := j / 3.6e6; math.Abs(r.Metrics.EnergyKWh-want) > 1e-9 {
			t.Fatalf("offset %v: energy = %v kWh, want %v", tc.offset, r.Metrics.EnergyKWh, want)
		}
		pol.KeepIdleVMs = true
		kept, err := RunPlanetLab(traces, pol)
		if err != nil {
			t.Fatal(err)
		}
		if kept.Destroyed != 0 || kept.Metrics.EnergyKWh < 2*r.Metrics.EnergyKWh {
			t.Fatalf("offset %v, KeepIdleVMs: destroyed %d, energy %v kWh (destroying: %v)",
				tc.offset, kept.Destroyed, kept.Metrics.EnergyKWh, r.Metrics.EnergyKWh)
		}
	}
}

// TestDoubleMigration: a CloudSim plan can move a VM twice in one round (see
// sched.ConsolidationPolicy.CloudSimUnderload). Both migrations run at once
// and are counted; the VM ends on the second target and the first is left
// empty.
func TestDoubleMigration(t *testing.T) {
	var vals [SamplesPerDay]uint8
	for i := range vals {
		vals[i] = 20
	}
	pol, _ := ParsePolicy("thr-mmt-0.8", 1)
	s := &simulator{pol: pol}
	s.setup([]Trace{{Name: "only", Samples: vals}})
	if err := s.initialPlacement(); err != nil {
		t.Fatal(err)
	}
	v := &s.vms[0]
	src := v.host
	s.setDemand(300)
	s.updateAll(300, true)
	s.startMigration(0, 3, 300)
	s.startMigration(0, 5, 300)
	s.startMigration(0, 5, 300) // already on its way there: ignored
	if s.migr != 2 || v.to != 5 || !slices.Contains(s.hosts[3].vms, 0) || !slices.Contains(s.hosts[5].vms, 0) {
		t.Fatalf("after start: migrations %d, to %d, host 3 %v, host 5 %v", s.migr, v.to, s.hosts[3].vms, s.hosts[5].vms)
	}
	// Each target reserves 10% of the 500-MIPS demand; the source delivers
	// 90% and counts it at 100%.
	if s.hosts[3].util != 50 || s.hosts[5].util != 50 || s.hosts[src].util != 500 {
		t.Fatalf("utilisation: source %v, targets %v %v", s.hosts[src].util, s.hosts[3].util, s.hosts[5].util)
	}
	s.completeMigrations(600)
	if v.host != 5 || v.to != -1 || len(s.hosts[src].vms) != 0 || len(s.hosts[3].vms) != 0 || !slices.Equal(s.hosts[5].vms, []int{0}) {
		t.Fatalf("after completion: host %d, to %d, lists %v %v %v", v.host, v.to, s.hosts[src].vms, s.hosts[3].vms, s.hosts[5].vms)
	}
}
