using System.Diagnostics;
using System.Numerics;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Median and range of repeated measurements.</summary>
internal readonly record struct Spread(double Median, double Min, double Max, int Count)
{
    public static Spread Of(IEnumerable<double> values)
    {
        var v = values.Where(x => !double.IsNaN(x)).Order().ToArray();
        if (v.Length == 0) return new Spread(double.NaN, double.NaN, double.NaN, 0);
        double med = v.Length % 2 == 1 ? v[v.Length / 2] : 0.5 * (v[v.Length / 2 - 1] + v[v.Length / 2]);
        return new Spread(med, v[0], v[^1], v.Length);
    }

    /// <summary>The same spread multiplied by <paramref name="f"/> (f &gt; 0).</summary>
    public Spread Times(double f) => new(Median * f, Min * f, Max * f, Count);
}

/// <summary>
/// Timing for the experiments: a warm-up run (JIT, tiered compilation, first touch) before anything is timed, then
/// <c>repeats</c> timed samples; runs shorter than <see cref="MinSampleSeconds"/> are batched so one sample is not
/// dominated by timer and scheduler noise.
/// </summary>
internal static class Timing
{
    /// <summary>A sample lasts at least this long (short runs are repeated inside it and averaged).</summary>
    public const double MinSampleSeconds = 0.02;

    /// <summary>Seconds per run of <paramref name="run"/>: median, min, max over <paramref name="repeats"/> samples after one warm-up run.</summary>
    public static Spread Seconds(Action run, int repeats)
    {
        ArgumentNullException.ThrowIfNull(run);
        int batch = BatchFor(run); // includes the warm-up run
        var sw = new Stopwatch();
        var samples = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            sw.Restart();
            for (int b = 0; b < batch; b++) run();
            samples[r] = sw.Elapsed.TotalSeconds / batch;
        }
        return Spread.Of(samples);
    }

    /// <summary>The exact kernel on head 0 as a timed action: on all rows when n·m ≤ <paramref name="fullPairs"/>, else on
    /// <paramref name="sampleRows"/> random query rows with all keys; <c>Scale</c> turns its seconds into the whole
    /// problem's (n/rows: every row costs the same m keys; causal: times the mean visible fraction). <c>Rows</c> are the
    /// rows the caller should measure errors on.</summary>
    public static (Action Run, double Scale, int SampledRows, int[] Rows) ExactRunner<T>(AttentionProblem<T> p, int threads, int sampleRows = 1024,
        int seed = 1, double fullPairs = 1 << 24) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var exact = AttentionAlgorithms.Create("exact");
        var settings = new AttentionSettings { Threads = threads };
        var head = p.Heads == 1 ? p : new AttentionProblem<T>(p.Q[..(p.N * p.D)], p.K[..(p.M * p.D)], p.V[..(p.M * p.Dv)], p.N, p.M, p.D, p.Dv, 1, p.Scale, p.Causal);
        if ((double)p.N * p.M <= fullPairs || sampleRows >= p.N)
            return (() => exact.Compute(head, settings), 1, 0, Enumerable.Range(0, p.N).ToArray());
        var rows = Instances.SampleRows(p.N, sampleRows, seed + 7);
        var sub = SampleQueries(head, rows);
        double visible = p.Causal ? Enumerable.Range(0, p.N).Average(i => (double)Math.Min(i + 1, p.M)) / p.M : 1;
        return (() => exact.Compute(sub, settings), (double)p.N / rows.Length * visible, rows.Length, rows);
    }

    /// <summary>The exact kernel's seconds for the whole problem (head 0), see <see cref="ExactRunner"/>.</summary>
    public static (Spread Seconds, int SampledRows, int[] Rows) Exact<T>(AttentionProblem<T> p, int threads, int repeats, int sampleRows = 1024,
        int seed = 1, double fullPairs = 1 << 24) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var (run, scale, sampled, rows) = ExactRunner(p, threads, sampleRows, seed, fullPairs);
        return (Seconds(run, repeats).Times(scale), sampled, rows);
    }

    /// <summary>
    /// Seconds of <paramref name="a"/> and <paramref name="b"/> timed in interleaved samples (a, b, a, b, …) after a
    /// warm-up of each, and the spread of the per-sample ratio a/b: load that changes during the measurement hits
    /// both sides of a ratio alike, so the ratio is steadier than a ratio of separately taken medians.
    /// </summary>
    public static (Spread Ratio, Spread A, Spread B) Paired(Action a, Action b, int repeats)
    {
        int ba = BatchFor(a), bb = BatchFor(b);
        var ta = new double[repeats];
        var tb = new double[repeats];
        var ratio = new double[repeats];
        var sw = new Stopwatch();
        for (int r = 0; r < repeats; r++)
        {
            sw.Restart();
            for (int i = 0; i < ba; i++) a();
            ta[r] = sw.Elapsed.TotalSeconds / ba;
            sw.Restart();
            for (int i = 0; i < bb; i++) b();
            tb[r] = sw.Elapsed.TotalSeconds / bb;
            ratio[r] = ta[r] / tb[r];
        }
        return (Spread.Of(ratio), Spread.Of(ta), Spread.Of(tb));
    }

    /// <summary>Runs <paramref name="run"/> once (warm-up) and returns how many runs make one sample of at least <see cref="MinSampleSeconds"/>.</summary>
    private static int BatchFor(Action run)
    {
        var sw = Stopwatch.StartNew();
        run();
        double first = sw.Elapsed.TotalSeconds;
        return first >= MinSampleSeconds ? 1 : (int)Math.Min(1000, Math.Ceiling(MinSampleSeconds / Math.Max(first, 1e-7)));
    }

    /// <summary>Head 0 restricted to the query rows <paramref name="rows"/> (all keys; non-causal).</summary>
    public static AttentionProblem<T> SampleQueries<T>(AttentionProblem<T> p, int[] rows) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var q = p.Q.Span;
        var sub = new T[rows.Length * p.D];
        for (int i = 0; i < rows.Length; i++) q.Slice(rows[i] * p.D, p.D).CopyTo(sub.AsSpan(i * p.D, p.D));
        return new AttentionProblem<T>(sub, p.K[..(p.M * p.D)], p.V[..(p.M * p.Dv)], rows.Length, p.M, p.D, p.Dv, 1, p.Scale, false);
    }
}
