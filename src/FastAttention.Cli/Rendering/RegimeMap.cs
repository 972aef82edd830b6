using System.Globalization;
using FastAttention.Approximation;
using ScottPlot;

namespace FastAttention.Cli.Rendering;

/// <summary>
/// The regime map's coordinates: head dimensions d on the x axis and entry bounds B on the y axis, one column and row
/// per grid value (equally spaced), anything between grid values placed by interpolating log d (log B) between its
/// neighbours — so theory curves and real heads can be drawn on the measured grid.
/// </summary>
internal sealed class RegimeAxes(IReadOnlyList<int> ds, IReadOnlyList<double> bounds)
{
    public IReadOnlyList<int> Ds { get; } = ds;
    public IReadOnlyList<double> Bounds { get; } = bounds;

    public double X(double d) => Interpolate(Ds.Select(v => (double)v).ToArray(), d);
    public double Y(double b) => Interpolate(Bounds.ToArray(), b);

    /// <summary>Position of <paramref name="v"/> among the sorted grid values: i at grid[i], log-linear between, clamped to
    /// half a cell beyond the ends.</summary>
    private static double Interpolate(double[] grid, double v)
    {
        if (grid.Length == 1) return 0;
        double lv = Math.Log(Math.Max(v, 1e-300));
        if (v <= grid[0]) return Math.Max(-0.5, (lv - Math.Log(grid[0])) / (Math.Log(grid[1]) - Math.Log(grid[0])));
        for (int i = 0; i + 1 < grid.Length; i++)
            if (v <= grid[i + 1]) return i + (lv - Math.Log(grid[i])) / (Math.Log(grid[i + 1]) - Math.Log(grid[i]));
        int k = grid.Length - 1;
        return Math.Min(k + 0.5, k + (lv - Math.Log(grid[k])) / (Math.Log(grid[k]) - Math.Log(grid[k - 1])));
    }

    public void Apply(Plot p)
    {
        p.Axes.Bottom.SetTicks(Enumerable.Range(0, Ds.Count).Select(i => (double)i).ToArray(), Ds.Select(d => d.ToString(CultureInfo.InvariantCulture)).ToArray());
        p.Axes.Left.SetTicks(Enumerable.Range(0, Bounds.Count).Select(i => (double)i).ToArray(), Bounds.Select(b => b.ToString("G6", CultureInfo.InvariantCulture)).ToArray());
        p.Axes.SetLimits(-0.5, Ds.Count - 0.5, -0.5, Bounds.Count - 0.5);
    }
}

/// <summary>One measured cell of the map: its winner and speedup, or why exact won (and then the fastest certified
/// algorithm's measured speedup, when one ran).</summary>
internal sealed record MapCell(int D, double Bound, string Winner, double Speedup, bool AllRefused, string? Fastest = null, double FastestSpeedup = double.NaN);

/// <summary>Draws the measured regime map (coloured cells in speedup bins, winner and speedup written in each) with the
/// theory's boundaries over it.</summary>
internal static class RegimeMap
{
    private static readonly (double From, string Label)[] Bins = [(1, "1–3×"), (3, "3–10×"), (10, "10–100×"), (100, "100–1000×"), (1000, "≥ 1000×")];

    private static Color BinColor(int i) => new ScottPlot.Colormaps.Viridis().GetColor(0.15 + 0.85 * i / (Bins.Length - 1));

    public static readonly Color Slower = Color.FromHex("#d9d9d9"), Refused = Color.FromHex("#8c8c8c");

    /// <summary>The cells as rectangles; the legend lists the colours used, in speedup order.</summary>
    public static void DrawCells(Plot p, RegimeAxes axes, IReadOnlyList<MapCell> cells)
    {
        var kinds = cells.Select(Kind).Distinct().OrderBy(k => k).ToList();
        foreach (int k in kinds)
        {
            // A zero-size rectangle per colour, added first, so the legend is in bin order whatever the cell order.
            var key = p.Add.Rectangle(0, 0, 0, 0);
            key.FillColor = ColorOf(k);
            key.LineWidth = 0;
            key.LegendText = k switch { -2 => "exact: every approximate algorithm refused", -1 => "exact: the certified ones are slower", _ => Bins[k].Label };
        }
        foreach (var c in cells)
        {
            double x = IndexOf(axes.Ds, c.D), y = IndexOf(axes.Bounds, c.Bound);
            if (x < 0 || y < 0) continue;
            var rect = p.Add.Rectangle(x - 0.5, x + 0.5, y - 0.5, y + 0.5);
            rect.FillColor = ColorOf(Kind(c));
            rect.LineColor = Colors.White;
            rect.LineWidth = 1;
        }
    }

    /// <summary>Winner and speedup written in each cell (draw after the boundaries so the text stays on top).</summary>
    public static void DrawLabels(Plot p, RegimeAxes axes, IReadOnlyList<MapCell> cells)
    {
        foreach (var c in cells)
        {
            double x = IndexOf(axes.Ds, c.D), y = IndexOf(axes.Bounds, c.Bound);
            if (x < 0 || y < 0) continue;
            int k = Kind(c);
            string label = k >= 0 ? $"{c.Speedup:0.#}×\n{c.Winner}" : k == -2 ? "exact\n(all refuse)"
                : c.Fastest is not null && double.IsFinite(c.FastestSpeedup) ? $"exact\n({c.Fastest} {c.FastestSpeedup.ToString("0.##", CultureInfo.InvariantCulture)}×)" : "exact";
            var t = p.Add.Text(label, x, y);
            t.Alignment = Alignment.MiddleCenter;
            t.LabelFontSize = 11;
            t.LabelFontColor = k is >= 0 and < 3 ? Colors.White : Colors.Black;
        }
    }

    /// <summary>Bin index of a fast cell, −1 for exact (slower), −2 for exact (all refused).</summary>
    private static int Kind(MapCell c) =>
        c.Winner != "exact" && c.Speedup >= 1 ? Array.FindLastIndex(Bins, b => c.Speedup >= b.From) : c.AllRefused ? -2 : -1;

    private static Color ColorOf(int kind) => kind switch { -2 => Refused, -1 => Slower, _ => BinColor(kind) };

    /// <summary>The map's colour for a measured speedup (below 1: the "slower than exact" grey).</summary>
    public static Color SpeedupColor(double speedup) => speedup >= 1 ? BinColor(Array.FindLastIndex(Bins, b => speedup >= b.From)) : Slower;

    /// <summary>Text colour readable on <see cref="SpeedupColor"/>.</summary>
    public static Color SpeedupTextColor(double speedup) => speedup >= 1 && speedup < 100 ? Colors.White : Colors.Black;

    private static int IndexOf<T>(IReadOnlyList<T> list, T v)
    {
        for (int i = 0; i < list.Count; i++) if (EqualityComparer<T>.Default.Equals(list[i], v)) return i;
        return -1;
    }

    /// <summary>
    /// The theory's boundaries: Alman–Song's B = √(ln n) (Theorems 1.3/1.4 with c = 1; with s = 1/d the logits are at
    /// most B²), Theorem 3.7's cost boundary for the polynomial method (rank C(g + d, d) with g from Lemma 2.1 at R = B²
    /// reaching n/2, where n·r·(d + d_v) flops stop beating n²·d), and Gupta et al.'s d = 2^{log* n} beyond which
    /// n^{2−o(1)} is a lower bound for B = poly(n) (Theorem 1.4; below it, d = O(1): Õ(n^{2−1/d}), Theorem 1.1).
    /// </summary>
    public static void DrawTheory(Plot p, RegimeAxes axes, int n, double epsilon, bool scaleIsOneOverD)
    {
        double lnN = Math.Log(n);
        if (scaleIsOneOverD)
        {
            double y = axes.Y(Math.Sqrt(lnN));
            var hl = p.Add.ScatterLine(new[] { -0.5, axes.Ds.Count - 0.5 }, new[] { y, y }, Colors.Red);
            hl.LineWidth = 2.5f;
            hl.LegendText = $"Alman–Song: B = √(ln n) = {Math.Sqrt(lnN):F2}";
            var xs = new List<double>();
            var ys = new List<double>();
            foreach (int d in axes.Ds)
            {
                double b = PolynomialBoundary(n, d, epsilon);
                if (double.IsNaN(b)) continue;
                xs.Add(axes.X(d)); ys.Add(axes.Y(b));
            }
            if (xs.Count > 0)
            {
                var poly = p.Add.ScatterLine(xs.ToArray(), ys.ToArray(), Colors.Orange);
                poly.LineWidth = 2.5f;
                poly.MarkerShape = MarkerShape.FilledDiamond;
                poly.MarkerSize = 7;
                poly.LegendText = "Theorem 3.7: rank C(g+d, d) = n/2 (g from Lemma 2.1, R = B²)";
            }
        }
        double dStar = Math.Pow(2, LogStar(n));
        double x = axes.X(dStar);
        var vl = p.Add.ScatterLine(new[] { x, x }, new[] { -0.5, axes.Bounds.Count - 0.5 }, Colors.Magenta);
        vl.LineWidth = 2.5f;
        vl.LegendText = $"Gupta et al.: d = 2^(log* n) = {dStar:G3} (constant d left of it; n^(2−o(1)) beyond)";
    }

    /// <summary>The largest B (log grid, 1% steps) at which the polynomial method's rank r = C(g + d, d), with g the
    /// verified degree for exp on [−B², B²] at relative error ε (Lemma 2.1), is at most n/2; NaN when even B = 0.01 is not.</summary>
    public static double PolynomialBoundary(int n, int d, double epsilon)
    {
        double last = double.NaN;
        for (double b = 0.01; b < 1000; b *= 1.01)
        {
            double r = b * b;
            if (ExpPolynomial.FloatingPointFloor(2 * r) * 4 > epsilon) break;
            int g;
            try { g = ExpPolynomial.Create(-r, r, epsilon).Degree; }
            catch (AttentionRefusedException) { break; } // beyond what float64 can certify: the boundary is below this B
            if (Binomial(g + d, d) > n / 2.0) break;
            last = b;
        }
        return last;
    }

    private static double Binomial(int a, int b)
    {
        double c = 1;
        for (int i = 1; i <= b; i++) c = c * (a - b + i) / i;
        return c;
    }

    /// <summary>log* n (base 2): how many times log₂ must be applied to reach ≤ 1.</summary>
    public static int LogStar(double n)
    {
        int k = 0;
        while (n > 1) { n = Math.Log2(n); k++; }
        return k;
    }
}
