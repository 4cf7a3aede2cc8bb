package sched

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func scratch() []float64 { return make([]float64, DetectorScratch) }

func TestTHR(t *testing.T) {
	d := THR{Threshold: 0.8}
	for _, c := range []struct {
		u    float64
		want bool
	}{{0.79, false}, {0.8, false}, {0.81, true}, {1.2, true}} {
		if got := d.Overloaded(&HostLoad{Util: c.u}, scratch()); got != c.want {
			t.Errorf("THR-0.8 at %v = %v, want %v", c.u, got, c.want)
		}
	}
}

func TestIQR(t *testing.T) {
	// 0.05, 0.10, ..., 0.60 (12 samples). CloudSim positions for n=12:
	// Q1 = x[round(3.25)-1] = x[2] = 0.15, Q3 = x[round(9.75)-1] = x[9] = 0.50.
	h := make([]float64, 12)
	for i := range h {
		h[11-i] = 0.05 * float64(i+1) // newest first; order must not matter
	}
	if got := InterquartileRange(h); !near(got, 0.35) {
		t.Fatalf("IQR = %v, want 0.35", got)
	}
	// Threshold 1 - 1.5*0.35 = 0.475.
	d := IQR{S: 1.5}
	if d.Overloaded(&HostLoad{Util: 0.47, History: h}, scratch()) {
		t.Error("0.47 should be under 0.475")
	}
	if !d.Overloaded(&HostLoad{Util: 0.48, History: h}, scratch()) {
		t.Error("0.48 should be over 0.475")
	}
	// 11 samples: falls back to THR 0.7.
	if d.Overloaded(&HostLoad{Util: 0.69, History: h[:11]}, scratch()) || !d.Overloaded(&HostLoad{Util: 0.71, History: h[:11]}, scratch()) {
		t.Error("IQR with 11 samples must fall back to THR 0.7")
	}
}

func TestMAD(t *testing.T) {
	h := []float64{0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.6, 0.6}
	// median 0.35; |x-0.35| = 0.25×4, 0.15×4, 0.05×4; their median 0.15.
	if got := Median(h); !near(got, 0.35) {
		t.Fatalf("median = %v, want 0.35", got)
	}
	if got := MAD(h); !near(got, 0.15) {
		t.Fatalf("MAD = %v, want 0.15", got)
	}
	d := MADDetector{S: 2.5} // threshold 1 - 0.375 = 0.625
	if d.Overloaded(&HostLoad{Util: 0.62, History: h}, scratch()) || !d.Overloaded(&HostLoad{Util: 0.63, History: h}, scratch()) {
		t.Error("MAD-2.5 threshold should be 0.625")
	}
	if d.Overloaded(&HostLoad{Util: 0.69, History: h[:5]}, scratch()) || !d.Overloaded(&HostLoad{Util: 0.71, History: h[:5]}, scratch()) {
		t.Error("MAD with 5 samples must fall back to THR 0.7")
	}
}

// line returns a newest-first history of y = slope·x at x = 1..10.
func line(slope float64) []float64 {
	h := make([]float64, 10)
	for x := 1; x <= 10; x++ {
		h[10-x] = slope * float64(x)
	}
	return h
}

func TestLRFamilyOnALine(t *testing.T) {
	// Any weighting fits a straight line exactly: the prediction at
	// x = 10 + 1 interval is 11·slope.
	for _, mode := range []RegressionMode{RegressionLoess, RegressionRobust, RegressionOLS} {
		d := LR{S: 1.2, Mode: mode}
		l := &HostLoad{History: line(0.05), MigrationIntervals: 1}
		p, ok := d.Predict(l, scratch())
		if !ok || !near(p, 0.55) {
			t.Errorf("%s: prediction %v, want 0.55", d.Name(), p)
		}
		if d.Overloaded(l, scratch()) { // 1.2 × 0.55 = 0.66
			t.Errorf("%s: 0.66 is not overloaded", d.Name())
		}
		l = &HostLoad{History: line(0.08), MigrationIntervals: 1} // 1.2 × 0.88 = 1.056
		if !d.Overloaded(l, scratch()) {
			t.Errorf("%s: 1.056 is overloaded", d.Name())
		}
	}
}

func TestLROLSByHand(t *testing.T) {
	// y = 0,...,0,1 at x = 1..10: x̄ = 5.5, ȳ = 0.1, Sxy = 4.5, Sxx = 82.5,
	// b = 0.0545..., a = -0.2, prediction at 11 = 0.4.
	h := make([]float64, 10)
	h[0] = 1 // newest
	p, ok := LR{S: 1, Mode: RegressionOLS}.Predict(&HostLoad{History: h, MigrationIntervals: 1}, scratch())
	if !ok || !near(p, 0.4) {
		t.Fatalf("OLS prediction = %v, want 0.4", p)
	}
	// Tricube weighting puts more weight on recent samples, so it follows
	// the jump more than OLS does.
	pl, _ := LR{S: 1, Mode: RegressionLoess}.Predict(&HostLoad{History: h, MigrationIntervals: 1}, scratch())
	if !(pl > p) {
		t.Errorf("Loess prediction %v should exceed OLS %v", pl, p)
	}
	// Fewer than 10 samples: THR 0.7 fallback.
	d := LR{S: 1.2}
	if d.Overloaded(&HostLoad{Util: 0.69, History: h[:9]}, scratch()) || !d.Overloaded(&HostLoad{Util: 0.71, History: h[:9]}, scratch()) {
		t.Error("LR with 9 samples must fall back to THR 0.7")
	}
}

func TestTricubeSigmas(t *testing.T) {
	s := make([]float64, 10)
	tricubeSigmas(10, s)
	// i = 9: k = 1 → σ = 1. i = 2: k = (1-(7/9)^3)^3 = 0.148447... → σ = 6.7364...
	if !near(s[9], 1) {
		t.Errorf("σ[9] = %v, want 1", s[9])
	}
	k := math.Pow(1-343.0/729.0, 3)
	if !near(s[2], 1/k) || s[0] != s[2] || s[1] != s[2] {
		t.Errorf("σ[0..2] = %v, want all %v", s[:3], 1/k)
	}
}
