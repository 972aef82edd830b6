using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// The measurements behind <c>fastattn bench semantics</c>, all in one run: grouped-query against multi-head attention
/// (time per query head, bytes allocated), key padding and a sliding window against the unmasked run, and the exact
/// certificate's rounding bound against the measured error.
/// </summary>
internal static class SemanticsBenchmark
{
    public static BenchSemanticsReport Run(int n, int m, int d, int window, int gqaN, int queryHeads, int kvHeads,
        int boundN, int threads, bool f32, int repeats)
    {
        var settings = new AttentionSettings { Threads = threads };
        var alg = new FlashAttention();

        double tMha, tGqa, tPlain, tPad, tWin;
        long bMha, bGqa;
        // Grouped-query vs multi-head attention at the same shape: h_q query heads reading h_kv or h_q K/V heads.
        {
            var q = Data(queryHeads * gqaN * d, 21, f32);
            var kMha = Data(queryHeads * gqaN * d, 22, f32);
            var vMha = Data(queryHeads * gqaN * d, 23, f32);
            var mha = Problem(q, kMha, vMha, gqaN, gqaN, d, queryHeads, queryHeads, null, f32);
            var gqa = Problem(q, kMha, vMha, gqaN, gqaN, d, queryHeads, kvHeads, null, f32);
            bMha = Allocated(alg, mha, settings);
            bGqa = Allocated(alg, gqa, settings);
            var t = Interleaved(alg, settings, repeats, mha, gqa);
            (tMha, tGqa) = (t[0], t[1]);
        }
        long kvBytes = 2L * queryHeads * gqaN * d * (f32 ? 4 : 8);

        // Masks at n × m, one head: none, key padding to half the keys, a sliding window (which implies causal).
        {
            var q = Data(n * d, 31, f32);
            var k = Data(m * d, 32, f32);
            var v = Data(m * d, 33, f32);
            var plain = Problem(q, k, v, n, m, d, 1, 1, null, f32);
            var padded = Problem(q, k, v, n, m, d, 1, 1, new AttentionMask { KeyLengths = new[] { m / 2 } }, f32);
            var windowed = Problem(q, k, v, n, m, d, 1, 1, new AttentionMask { Window = window }, f32);
            var t = Interleaved(alg, settings, repeats, plain, padded, windowed);
            (tPlain, tPad, tWin) = (t[0], t[1], t[2]);
        }
        var bounds = new List<BoundMeasurement>();

        // The exact certificate's rounding bound against the error measured on every row (random inputs, s = 1/√d).
        foreach (var (name, dist, bound) in new[] { ("normal", Distribution.Normal, 3.0), ("uniform", Distribution.Uniform, 1.0) })
        {
            double[] q = Instances.Matrix(boundN * d, 1, bound, 41, dist), k = Instances.Matrix(boundN * d, 1, bound, 42, dist), v = Instances.Matrix(boundN * d, 1, bound, 43, dist);
            foreach (bool single in new[] { true, false })
            {
                var p = single
                    ? Problem(Instances.ToFloat32(q), Instances.ToFloat32(k), Instances.ToFloat32(v), boundN, boundN, d, 1, 1, null, true)
                    : Problem(q, k, v, boundN, boundN, d, 1, 1, null, false);
                var (certificate, measured) = single ? BoundAndError<float>(alg, p, settings) : BoundAndError<double>(alg, p, settings);
                bounds.Add(new BoundMeasurement(name, single ? "f32" : "f64", d, certificate, measured, certificate / measured));
            }
        }
        return new BenchSemanticsReport(n, m, d, threads, f32 ? "f32" : "f64", gqaN, queryHeads, kvHeads, tMha / queryHeads, tGqa / queryHeads, tGqa / tMha,
            bMha, bGqa, kvBytes, bGqa - bMha, tPlain, tPad, tPad / tPlain, window, tWin, tWin / tPlain, boundN, bounds);
    }

    private static Array Data(int count, int seed, bool f32)
    {
        var a = Instances.Matrix(count, 1, 3, seed, Distribution.Normal);
        return f32 ? Instances.ToFloat32(a) : a;
    }

    /// <summary>A problem over q and the first kvHeads K/V heads of k, v (views, no copy).</summary>
    private static object Problem(Array q, Array k, Array v, int n, int m, int d, int heads, int kvHeads, AttentionMask? mask, bool f32)
    {
        int kv = kvHeads * m * d;
        if (f32) return new AttentionProblem<float>((float[])q, ((float[])k).AsMemory(0, kv), ((float[])v).AsMemory(0, kv), n, m, d, d, heads, null, false, mask, kvHeads);
        return new AttentionProblem<double>((double[])q, ((double[])k).AsMemory(0, kv), ((double[])v).AsMemory(0, kv), n, m, d, d, heads, null, false, mask, kvHeads);
    }

    private static Action Runner(FlashAttention alg, object problem, AttentionSettings settings) => problem switch
    {
        AttentionProblem<float> p => () => alg.Compute(p, settings),
        AttentionProblem<double> p => () => alg.Compute(p, settings),
        _ => throw new InvalidOperationException(),
    };

    /// <summary>Bytes allocated by one run (after a warm-up run): output, packed panels and scratch — K and V copies would show here.</summary>
    private static long Allocated(FlashAttention alg, object problem, AttentionSettings settings)
    {
        var run = Runner(alg, problem, settings);
        run(); // warm-up (JIT, tiered compilation)
        long before = GC.GetTotalAllocatedBytes(true);
        run();
        return GC.GetTotalAllocatedBytes(true) - before;
    }

    /// <summary>Best seconds of each contender over <paramref name="repeats"/> rounds, the contenders interleaved within
    /// each round (the machine is shared: a load spike then hits all of them, not one).</summary>
    private static double[] Interleaved(FlashAttention alg, AttentionSettings settings, int repeats, params object[] problems)
    {
        var runs = problems.Select(p => Runner(alg, p, settings)).ToArray();
        foreach (var run in runs) run(); // warm-up
        var best = Enumerable.Repeat(double.PositiveInfinity, runs.Length).ToArray();
        for (int r = 0; r < repeats; r++)
            for (int c = 0; c < runs.Length; c++) best[c] = Math.Min(best[c], Measure.BestSeconds(runs[c], 1));
        return best;
    }

    private static (double Bound, double Measured) BoundAndError<T>(FlashAttention alg, object problem, AttentionSettings settings)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        var p = (AttentionProblem<T>)problem;
        var result = alg.Compute(p, settings);
        var reference = ReferenceAttention.Compute(p);
        double err = 0;
        for (int i = 0; i < reference.Length; i++) err = Math.Max(err, Math.Abs(double.CreateTruncating(result.Output[i]) - reference[i]));
        return (result.Certificate.ErrorBound, err);
    }
}
