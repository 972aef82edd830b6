using System.Globalization;
using System.Text;
using FastAttention.Cli.Infrastructure;
using ScottPlot;
using SkiaSharp;

namespace FastAttention.Cli.Rendering;

/// <summary>
/// Every experiment figure goes through here: ScottPlot 5 plots rendered headless to PNG and SVG (written atomically,
/// side by side when there are several panels), log axes (data plotted as log₁₀ values, ticks labelled as powers),
/// median-with-min–max markers, and the shared palette.
/// </summary>
internal static class Figure
{
    public const int Width = 960, Height = 620;

    /// <summary>Colours by series index (colour-blind-safe Tableau 10).</summary>
    public static Color Palette(int i) => new ScottPlot.Palettes.Category10().GetColor(i);

    /// <summary>One colour per algorithm name, the same in every figure.</summary>
    public static Color AlgorithmColor(string name) => name switch
    {
        "exact" => Colors.Black,
        "polynomial" => Palette(0),
        "vector" => Palette(1),
        "rounding" => Palette(2),
        "range" => Palette(4),
        "lowrank" => Palette(5),
        _ => Palette(6),
    };

    public static Plot New(string title, string xLabel, string yLabel)
    {
        var p = new Plot();
        p.Title(title, 15);
        p.XLabel(xLabel, 14);
        p.YLabel(yLabel, 14);
        return p;
    }

    /// <summary>Labels an axis whose data are log₁₀ values with ticks 10^k (major, integers only) and log minor ticks.</summary>
    public static void Log10Axis(IAxis axis) => axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
    {
        IntegerTicksOnly = true,
        MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
        LabelFormatter = PowerOfTen,
    };

    /// <summary>Labels an axis whose data are log₂ values with ticks 2^k.</summary>
    public static void Log2Axis(IAxis axis) => axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
    {
        IntegerTicksOnly = true,
        LabelFormatter = v => "2^" + Math.Round(v).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>10^k as a label: plain digits for 10⁻³ … 10⁴, else 10 with a superscript exponent.</summary>
    public static string PowerOfTen(double log10)
    {
        int k = (int)Math.Round(log10);
        if (k is >= -3 and <= 4) return Math.Pow(10, k).ToString(k < 0 ? "0.###" : "0", CultureInfo.InvariantCulture);
        return "10" + Superscript(k);
    }

    public static string Superscript(int k) => new(k.ToString(CultureInfo.InvariantCulture).Select(ch => ch switch
    {
        '-' => '⁻', '0' => '⁰', '1' => '¹', '2' => '²', '3' => '³', '4' => '⁴', '5' => '⁵', '6' => '⁶', '7' => '⁷', '8' => '⁸', _ => '⁹',
    }).ToArray());

    /// <summary>Medians as markers joined by a line, min–max as error bars. With <paramref name="log10"/> the values are
    /// plotted as log₁₀ (pair with <see cref="Log10Axis"/>).</summary>
    public static ScottPlot.Plottables.Scatter AddSpread(Plot p, IReadOnlyList<double> xs, IReadOnlyList<Spread> ys, Color color, string label,
        bool log10 = false, bool line = true, MarkerShape marker = MarkerShape.FilledCircle)
    {
        Func<double, double> f = log10 ? Math.Log10 : v => v;
        var ok = Enumerable.Range(0, xs.Count).Where(i => ys[i].Count > 0 && (!log10 || ys[i].Min > 0)).ToArray();
        double[] x = ok.Select(i => xs[i]).ToArray(), med = ok.Select(i => f(ys[i].Median)).ToArray();
        var sc = line ? p.Add.Scatter(x, med, color) : p.Add.ScatterPoints(x, med, color);
        sc.MarkerShape = marker;
        sc.MarkerSize = 8;
        sc.LegendText = label;
        if (ok.Length > 0)
        {
            var bars = p.Add.ErrorBar(x, med, ok.Select(i => f(ys[i].Max) - f(ys[i].Median)).ToArray());
            bars.YErrorNegative = ok.Select(i => f(ys[i].Median) - f(ys[i].Min)).ToArray();
            bars.Color = color;
            bars.CapSize = 6;
            bars.LineWidth = 1.5f;
        }
        return sc;
    }

    /// <summary>A reference line (theory, fit) through the points (x, y): thin and without markers. Solid, because the
    /// SVG backend cannot draw dash patterns (it draws them solid and prints a warning on stdout).</summary>
    public static ScottPlot.Plottables.Scatter AddReference(Plot p, double[] x, double[] y, Color color, string label)
    {
        var s = p.Add.ScatterLine(x, y, color);
        s.LineWidth = 1.5f;
        s.LegendText = label;
        return s;
    }

    /// <summary>Writes <paramref name="stem"/>.png and <paramref name="stem"/>.svg; returns both paths.</summary>
    public static string[] Save(Plot plot, string stem, int width = Width, int height = Height) => SaveSideBySide([plot], stem, width, height);

    /// <summary>Writes the panels left to right (each <paramref name="width"/>×<paramref name="height"/>) as one PNG and one SVG.</summary>
    public static string[] SaveSideBySide(IReadOnlyList<Plot> panels, string stem, int width = Width, int height = Height)
    {
        if (panels.Count == 0) throw new ArgumentException("a figure needs at least one panel.", nameof(panels));
        string png = stem + ".png", svg = stem + ".svg";
        byte[] pngBytes;
        if (panels.Count == 1) pngBytes = panels[0].GetImageBytes(width, height, ImageFormat.Png);
        else
        {
            using var surface = SKSurface.Create(new SKImageInfo(width * panels.Count, height));
            surface.Canvas.Clear(SKColors.White);
            // Each panel is rendered on its own (Plot.Render on a shared canvas clears all of it) and drawn in place.
            for (int i = 0; i < panels.Count; i++)
            {
                using var bitmap = SKBitmap.Decode(panels[i].GetImageBytes(width, height, ImageFormat.Png));
                surface.Canvas.DrawBitmap(bitmap, i * width, 0);
            }
            using var image = surface.Snapshot();
            using var data = image.Encode(SKEncodedImageFormat.Png, 100);
            pngBytes = data.ToArray();
        }
        OutputFiles.WriteOne(png, s => s.Write(pngBytes));
        string svgText;
        if (panels.Count == 1) svgText = panels[0].GetSvgXml(width, height);
        else
        {
            var sb = new StringBuilder();
            sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width * panels.Count}\" height=\"{height}\">\n");
            for (int i = 0; i < panels.Count; i++)
            {
                string inner = StripXmlDeclaration(panels[i].GetSvgXml(width, height));
                int at = inner.IndexOf("<svg", StringComparison.Ordinal);
                sb.Append(inner[..(at + 4)]).Append(CultureInfo.InvariantCulture, $" x=\"{i * width}\" y=\"0\"").Append(inner[(at + 4)..]).Append('\n');
            }
            sb.Append("</svg>\n");
            svgText = sb.ToString();
        }
        byte[] svgBytes = Encoding.UTF8.GetBytes(svgText);
        OutputFiles.WriteOne(svg, s => s.Write(svgBytes));
        return [png, svg];
    }

    private static string StripXmlDeclaration(string svg)
    {
        string s = svg.TrimStart();
        if (s.StartsWith("<?xml", StringComparison.Ordinal)) s = s[(s.IndexOf("?>", StringComparison.Ordinal) + 2)..];
        return s;
    }
}
