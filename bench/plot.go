// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotThroughput draws the throughput ratio against concurrency for each
// tracer and mode, with the 0.92 target, into a PNG.
func plotThroughput(res *Results, path string) error {
	p := plot.New()
	p.Title.Text = "Connect throughput under tracing (traced / untraced)"
	p.X.Label.Text = "concurrent connectors"
	p.Y.Label.Text = "throughput ratio (median of rounds)"
	p.Legend.Top = false
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	// Concurrency on a log2 axis: 1, 4 and 16 evenly spaced.
	var ticks []plot.Tick
	for _, c := range res.Params.Concs {
		ticks = append(ticks, plot.Tick{Value: math.Log2(float64(c)), Label: strconv.Itoa(c)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)

	colors := map[string]color.Color{
		"table":    color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		"json":     color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		"count":    color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		"bpftrace": color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	}
	shapes := map[string]draw.GlyphDrawer{
		"table": draw.CircleGlyph{}, "json": draw.SquareGlyph{}, "count": draw.TriangleGlyph{}, "bpftrace": draw.CrossGlyph{},
	}
	names := map[string]string{"table": "tcpconnect (table)", "json": "tcpconnect --json", "count": "tcpconnect -c", "bpftrace": "bpftrace reference"}
	ymax := 1.1
	for mi, mode := range res.Params.Modes {
		for _, cfg := range []string{"table", "json", "count", "bpftrace"} {
			var xys plotter.XYs
			for _, r := range res.Rows {
				if r.Mode == mode && r.Config == cfg && !math.IsNaN(float64(r.Ratio)) {
					xys = append(xys, plotter.XY{X: math.Log2(float64(r.Conc)), Y: float64(r.Ratio)})
					ymax = math.Max(ymax, float64(r.Ratio)+0.05)
				}
			}
			if len(xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return fmt.Errorf("plotting: %w", err)
			}
			line.Color = colors[cfg]
			line.Width = vg.Points(1.5)
			if mi > 0 {
				line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			points.Color = colors[cfg]
			points.Shape = shapes[cfg]
			p.Add(line, points)
			p.Legend.Add(fmt.Sprintf("%s, %s", names[cfg], mode), line, points)
		}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range res.Params.Concs {
		lo, hi = math.Min(lo, math.Log2(float64(c))), math.Max(hi, math.Log2(float64(c)))
	}
	target, err := plotter.NewLine(plotter.XYs{{X: lo - 0.3, Y: 0.92}, {X: hi + 0.3, Y: 0.92}})
	if err != nil {
		return fmt.Errorf("plotting: %w", err)
	}
	target.Color = color.Gray{Y: 0x60}
	target.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(target)
	p.Legend.Add("target 0.92", target)
	p.Y.Min, p.Y.Max = 0, ymax
	p.X.Min, p.X.Max = lo-0.3, hi+0.3
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("saving the chart: %w", err)
	}
	return nil
}
