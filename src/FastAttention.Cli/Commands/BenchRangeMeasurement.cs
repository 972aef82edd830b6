using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary>
/// One measurement of a range-search-family algorithm (vector, rounding, range, lowrank) against the exact kernel on
/// seeded data: Q, K entries in [−B, B] drawn from the distribution, V uniform in [−valueBound, valueBound]. 'line' is the
/// adversarial case for a kd-tree: keys on the diagonal t·(1, …, 1) and (for d ≥ 2) queries orthogonal to it, so every
/// key ties at the maximum and every axis-aligned box straddles the relevant halfspace's boundary with an ill-conditioned
/// expansion (Θ(m) work per query for a plain kd-tree; the range tree's principal-axis frames for thin nodes are what
/// this case measures). The exact kernel is timed on a random sample
/// of query rows (all keys) and scaled by n/rows; the error is measured against the float64 reference on those rows.
/// </summary>
internal static class BenchRangeMeasurement
{
    public const int ExactRows = 1024;

    public static BenchRangeReport Run(string algorithm, int n, int d, double bound, double scale, double epsilon,
        Distribution dist, int threads, double valueBound, int sampleRows = ExactRows, int seed = 1, int repeats = 1)
    {
        var alg = AttentionAlgorithms.Create(algorithm);
        if (alg.IsExact) throw new UsageException($"--algorithm must be an approximate algorithm (vector, rounding, range, lowrank), not '{algorithm}'.");
        var settings = new AttentionSettings { Epsilon = epsilon, Threads = threads };
        var problem = Make(n, d, bound, scale, dist, valueBound, seed);
        // Warm-up (JIT, tiered compilation) on a small instance of the same kind.
        try { alg.Compute(Make(Math.Min(n, 2048), d, bound, scale, dist, valueBound, seed + 10), settings); }
        catch (AttentionRefusedException) { }
        AttentionResult<double> result;
        result = alg.Compute(problem, settings);
        double seconds = result.Certificate.Elapsed.TotalSeconds;
        for (int r = 1; r < repeats; r++) seconds = Math.Min(seconds, alg.Compute(problem, settings).Certificate.Elapsed.TotalSeconds);
        var rows = Instances.SampleRows(n, sampleRows, seed + 3);
        double exactSeconds = ExactSeconds(problem, rows, threads);
        double err = Measure.MaxAbsError(problem, result.Output, rows);
        return new BenchRangeReport(alg.Name, n, d, bound, scale, valueBound, dist.ToString().ToLowerInvariant(), settings.EffectiveThreads,
            epsilon, result.Certificate.ErrorBound, err, seconds, repeats, exactSeconds, exactSeconds / seconds,
            rows.Length, System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64, CertificateReport.Parameters(result.Certificate.Parameters));
    }

    public static AttentionProblem<double> Make(int n, int d, double bound, double scale, Distribution dist, double valueBound, int seed)
    {
        var q = Instances.Matrix(n, d, bound, seed, dist == Distribution.Line ? Distribution.Uniform : dist);
        if (dist == Distribution.Line && d >= 2)
            for (int i = 0; i < n; i++)
            {
                // Project onto the orthogonal complement of (1, …, 1): the worst case for axis-aligned boxes.
                double mean = 0;
                for (int c = 0; c < d; c++) mean += q[i * d + c];
                mean /= d;
                for (int c = 0; c < d; c++) q[i * d + c] = Math.Clamp(q[i * d + c] - mean, -bound, bound);
            }
        var k = Instances.Matrix(n, d, bound, seed + 1, dist);
        var v = Instances.Matrix(n, d, valueBound, seed + 2);
        return new AttentionProblem<double>(q, k, v, n, n, d, d, 1, scale);
    }

    /// <summary>Seconds of the exact kernel on the sampled query rows (all keys), scaled by n/rows.</summary>
    public static double ExactSeconds(AttentionProblem<double> p, int[] rows, int threads)
    {
        var exact = AttentionAlgorithms.Create("exact");
        int d = p.D;
        var qs = new double[rows.Length * d];
        var q = p.Q.Span;
        for (int r = 0; r < rows.Length; r++) q.Slice(rows[r] * d, d).CopyTo(qs.AsSpan(r * d, d));
        var sub = new AttentionProblem<double>(qs, p.K, p.V, rows.Length, p.M, d, p.Dv, 1, p.Scale);
        var settings = new AttentionSettings { Threads = threads };
        exact.Compute(new AttentionProblem<double>(qs.AsMemory(0, Math.Min(rows.Length, 64) * d), p.K.Slice(0, Math.Min(p.M, 4096) * d), p.V.Slice(0, Math.Min(p.M, 4096) * p.Dv), Math.Min(rows.Length, 64), Math.Min(p.M, 4096), d, p.Dv, 1, p.Scale), settings);
        double s = Measure.BestSeconds(() => exact.Compute(sub, settings), 1);
        return s * p.N / rows.Length;
    }
}
