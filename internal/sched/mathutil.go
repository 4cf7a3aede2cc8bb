package sched

import (
	"math"
	"slices"
)

// median returns the middle value of xs (the mean of the two middle values
// for an even count), as Apache Commons Math's Percentile(50) does. It sorts
// a copy in buf, which must have len >= len(xs); buf lets hot paths avoid
// allocation.
func median(xs, buf []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := buf[:n]
	copy(s, xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}

// Median is the median of xs (Commons Math Percentile(50) semantics).
func Median(xs []float64) float64 { return median(xs, make([]float64, len(xs))) }

// mad is the median absolute deviation around the median.
func mad(xs, buf []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	m := median(xs, buf)
	dev := buf[n : 2*n]
	for i, x := range xs {
		dev[i] = math.Abs(m - x)
	}
	return median(dev, buf[:n])
}

// MAD is the median absolute deviation of xs.
func MAD(xs []float64) float64 { return mad(xs, make([]float64, 2*len(xs))) }

// iqr is the interquartile range as CloudSim's MathUtil.iqr computes it: sort,
// Q1 = x[round(0.25(n+1))-1], Q3 = x[round(0.75(n+1))-1], with Java's
// Math.round (floor(x+0.5)).
func iqr(xs, buf []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := buf[:n]
	copy(s, xs)
	slices.Sort(s)
	q1 := int(math.Floor(0.25*float64(n+1)+0.5)) - 1
	q3 := int(math.Floor(0.75*float64(n+1)+0.5)) - 1
	q1 = min(max(q1, 0), n-1)
	q3 = min(max(q3, 0), n-1)
	return s[q3] - s[q1]
}

// InterquartileRange is the interquartile range of xs with CloudSim's
// quartile positions.
func InterquartileRange(xs []float64) float64 { return iqr(xs, make([]float64, len(xs))) }

// weightedLine fits y = a + b·x by weighted least squares with weights w
// (nil means all 1) and returns (a, b). ok is false when the fit is
// degenerate (fewer than two distinct weighted x values).
func weightedLine(x, y, w []float64) (a, b float64, ok bool) {
	var sw, sx, sy float64
	for i := range x {
		wi := 1.0
		if w != nil {
			wi = w[i]
		}
		sw += wi
		sx += wi * x[i]
		sy += wi * y[i]
	}
	if sw == 0 {
		return 0, 0, false
	}
	mx, my := sx/sw, sy/sw
	var sxx, sxy float64
	for i := range x {
		wi := 1.0
		if w != nil {
			wi = w[i]
		}
		dx := x[i] - mx
		sxx += wi * dx * dx
		sxy += wi * dx * (y[i] - my)
	}
	if sxx == 0 {
		return 0, 0, false
	}
	b = sxy / sxx
	return my - b*mx, b, true
}

// tricubeSigmas returns CloudSim 3.0's getTricubeWeigts(n): for i >= 2,
// 1/k with k = (1 - ((n-1-i)/(n-1))^3)^3, and the first two entries copied
// from the third. CloudSim passed these to Flanagan's Regression as the
// standard deviations of y, so the effective least-squares weight is 1/σ².
func tricubeSigmas(n int, out []float64) {
	top := float64(n - 1)
	for i := 2; i < n; i++ {
		k := math.Pow(1-math.Pow((top-float64(i))/top, 3), 3)
		if k > 0 {
			out[i] = 1 / k
		} else {
			out[i] = math.MaxFloat64
		}
	}
	if n > 2 {
		out[0], out[1] = out[2], out[2]
	}
}

// sigmasToWeights turns standard deviations into least-squares weights 1/σ².
func sigmasToWeights(s []float64) {
	for i, v := range s {
		if v >= math.MaxFloat64 || v == 0 {
			s[i] = 0
			continue
		}
		s[i] = 1 / (v * v)
	}
}

// RegressionMode says how the LR family fits its line.
type RegressionMode uint8

const (
	// RegressionLoess is local regression with tricube weights (CCPE12 §6.1;
	// CloudSim 3.0 to 3.0.2 via Flanagan's weighted Regression).
	RegressionLoess RegressionMode = iota
	// RegressionRobust adds a bisquare re-weighting of the Loess residuals
	// (CCPE12 §6.1, LRR).
	RegressionRobust
	// RegressionOLS is plain ordinary least squares: what CloudSim 3.0.3 and
	// later actually compute for both LR and LRR.
	RegressionOLS
)

// fitTrend fits the utilisation samples y (oldest first, at x = 1..n) and
// returns intercept and slope. scratch must hold at least 4n floats.
func fitTrend(y []float64, mode RegressionMode, scratch []float64) (a, b float64, ok bool) {
	n := len(y)
	x := scratch[:n]
	for i := range x {
		x[i] = float64(i + 1)
	}
	if mode == RegressionOLS {
		return weightedLine(x, y, nil)
	}
	sig := scratch[n : 2*n]
	tricubeSigmas(n, sig)
	w := scratch[2*n : 3*n]
	copy(w, sig)
	sigmasToWeights(w)
	a, b, ok = weightedLine(x, y, w)
	if !ok || mode == RegressionLoess {
		return a, b, ok
	}
	// Robust step: bisquare weights from the residuals of the first fit,
	// multiplied into the tricube sigmas, exactly as getTricubeBisquareWeigts.
	res := scratch[3*n : 4*n]
	for i := range y {
		res[i] = math.Abs(y[i] - (a + b*x[i]))
	}
	s6 := median(res, w) * 6 // w is free again; median sorts a copy into it
	for i := range y {
		res[i] = y[i] - (a + b*x[i])
	}
	for i := 2; i < n; i++ {
		var k float64
		if s6 > 0 {
			k = math.Pow(1-math.Pow(res[i]/s6, 2), 2)
		}
		if k > 0 {
			w[i] = (1 / k) * sig[i]
		} else {
			w[i] = math.MaxFloat64
		}
	}
	if n > 2 {
		w[0], w[1] = w[2], w[2]
	}
	sigmasToWeights(w)
	a2, b2, ok2 := weightedLine(x, y, w)
	if !ok2 || math.IsNaN(a2) || math.IsNaN(b2) {
		return a, b, ok
	}
	return a2, b2, true
}

// rSquared returns the coefficient of determination of an OLS regression
// (with intercept) of y on the columns xs. ok is false when there are not
// more observations than parameters or the system is singular; CloudSim's
// MC then falls back to MMT.
func rSquared(y []float64, xs [][]float64) (r2 float64, ok bool) {
	m := len(y)
	p := len(xs) + 1
	if m <= p {
		return 0, false
	}
	// Normal equations A·β = c with A = XᵀX, X = [1 | xs].
	a := make([]float64, p*p)
	c := make([]float64, p)
	col := func(j, i int) float64 {
		if j == 0 {
			return 1
		}
		return xs[j-1][i]
	}
	for i := 0; i < m; i++ {
		for j := 0; j < p; j++ {
			vj := col(j, i)
			c[j] += vj * y[i]
			for k := j; k < p; k++ {
				a[j*p+k] += vj * col(k, i)
			}
		}
	}
	for j := 0; j < p; j++ {
		for k := 0; k < j; k++ {
			a[j*p+k] = a[k*p+j]
		}
	}
	// Gaussian elimination with partial pivoting.
	for j := 0; j < p; j++ {
		piv := j
		for r := j + 1; r < p; r++ {
			if math.Abs(a[r*p+j]) > math.Abs(a[piv*p+j]) {
				piv = r
			}
		}
		if math.Abs(a[piv*p+j]) < 1e-12 {
			return 0, false
		}
		if piv != j {
			for k := 0; k < p; k++ {
				a[j*p+k], a[piv*p+k] = a[piv*p+k], a[j*p+k]
			}
			c[j], c[piv] = c[piv], c[j]
		}
		for r := j + 1; r < p; r++ {
			f := a[r*p+j] / a[j*p+j]
			for k := j; k < p; k++ {
				a[r*p+k] -= f * a[j*p+k]
			}
			c[r] -= f * c[j]
		}
	}
	beta := make([]float64, p)
	for j := p - 1; j >= 0; j-- {
		s := c[j]
		for k := j + 1; k < p; k++ {
			s -= a[j*p+k] * beta[k]
		}
		beta[j] = s / a[j*p+j]
	}
	var mean float64
	for _, v := range y {
		mean += v
	}
	mean /= float64(m)
	var ssr, sst float64
	for i := 0; i < m; i++ {
		pred := 0.0
		for j := 0; j < p; j++ {
			pred += beta[j] * col(j, i)
		}
		ssr += (y[i] - pred) * (y[i] - pred)
		sst += (y[i] - mean) * (y[i] - mean)
	}
	if sst == 0 {
		return math.NaN(), true
	}
	return 1 - ssr/sst, true
}
