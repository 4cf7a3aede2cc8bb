package sched

import (
	"fmt"
	"math"
)

// HostLoad is what an overload detector sees of one host.
type HostLoad struct {
	// Util is the host's CPU demand (sum of its workloads' current demand)
	// divided by its CPU capacity. It can exceed 1.
	Util float64
	// History is the host's utilisation history, newest first, with trailing
	// zeros trimmed: sum over its workloads of (workload utilisation sample ×
	// workload CPU ÷ host CPU), as CloudSim's PowerHostUtilizationHistory.
	History []float64
	// MigrationIntervals is how many scheduling intervals the slowest
	// migration off this host would take (LR predicts that far ahead).
	MigrationIntervals float64
}

// Detector decides whether a host is overloaded. Implementations are pure
// values; scratch is caller-owned working memory of at least
// DetectorScratch floats so the hot path does not allocate.
type Detector interface {
	Overloaded(l *HostLoad, scratch []float64) bool
	// Name is the policy-name form, e.g. "thr-0.8".
	Name() string
}

// DetectorScratch is the scratch length every Detector needs.
const DetectorScratch = 4 * 64

// THR is a static utilisation threshold: overloaded if Util > Threshold.
type THR struct{ Threshold float64 }

// Overloaded implements Detector.
func (d THR) Overloaded(l *HostLoad, _ []float64) bool { return l.Util > d.Threshold }

// Name implements Detector.
func (d THR) Name() string { return fmt.Sprintf("thr-%g", d.Threshold) }

// fallbackTHR is what the adaptive detectors use without enough history
// (CloudSim's runners construct them with a THR 0.7 fallback).
var fallbackTHR = THR{Threshold: 0.7}

// minAdaptiveHistory is the history length IQR and MAD need ("12 has been
// suggested as a safe value" in CloudSim).
const minAdaptiveHistory = 12

// IQR sets the threshold to 1 − S·IQR(history).
type IQR struct{ S float64 }

// Overloaded implements Detector.
func (d IQR) Overloaded(l *HostLoad, scratch []float64) bool {
	if len(l.History) < minAdaptiveHistory {
		return fallbackTHR.Overloaded(l, scratch)
	}
	return l.Util > 1-d.S*iqr(l.History, scratch)
}

// Name implements Detector.
func (d IQR) Name() string { return fmt.Sprintf("iqr-%g", d.S) }

// MADDetector sets the threshold to 1 − S·MAD(history).
type MADDetector struct{ S float64 }

// Overloaded implements Detector.
func (d MADDetector) Overloaded(l *HostLoad, scratch []float64) bool {
	if len(l.History) < minAdaptiveHistory {
		return fallbackTHR.Overloaded(l, scratch)
	}
	return l.Util > 1-d.S*mad(l.History, scratch)
}

// Name implements Detector.
func (d MADDetector) Name() string { return fmt.Sprintf("mad-%g", d.S) }

// lrWindow is the number of most recent samples the LR family fits ("we use
// 10 to make the regression responsive enough to latest values").
const lrWindow = 10

// LR predicts the utilisation MigrationIntervals ahead with a line fitted to
// the last 10 samples; overloaded if S × prediction ≥ 1. Mode selects Loess
// (LR), robust Loess (LRR) or plain OLS (what CloudSim ≥ 3.0.3 runs for both).
type LR struct {
	S    float64
	Mode RegressionMode
}

// Overloaded implements Detector.
func (d LR) Overloaded(l *HostLoad, scratch []float64) bool {
	p, ok := d.Predict(l, scratch)
	if !ok {
		return fallbackTHR.Overloaded(l, scratch)
	}
	return d.S*p >= 1
}

// Predict returns the predicted utilisation, or ok=false without enough
// history.
func (d LR) Predict(l *HostLoad, scratch []float64) (float64, bool) {
	if len(l.History) < lrWindow {
		return 0, false
	}
	y := scratch[4*lrWindow : 5*lrWindow]
	for i := 0; i < lrWindow; i++ {
		y[i] = l.History[lrWindow-i-1] // oldest first
	}
	a, b, ok := fitTrend(y, d.Mode, scratch[:4*lrWindow])
	if !ok || math.IsNaN(a) || math.IsNaN(b) {
		return 0, false
	}
	return a + b*(lrWindow+l.MigrationIntervals), true
}

// Name implements Detector.
func (d LR) Name() string {
	switch d.Mode {
	case RegressionRobust:
		return fmt.Sprintf("lrr-%g", d.S)
	case RegressionOLS:
		return fmt.Sprintf("ols-%g", d.S)
	}
	return fmt.Sprintf("lr-%g", d.S)
}
