using System.Diagnostics;

namespace FastAttention.Planning;

/// <summary>
/// Measures the <see cref="MachineRates"/> the planner predicts with, on the library's own kernels: the exact kernel's
/// flop and exp rates (two shapes, one flop-bound and one exp-bound, solved for both), the polynomial method's float64
/// flop rate, the range structures' cost per node and per leaf key (two instances with different node/key mixes), and
/// the memory bandwidth (a STREAM-style triad over buffers larger than the last-level cache). Each figure is the best
/// of several short runs, one thread (bandwidth: all threads). A few seconds in all.
/// </summary>
public static class Calibration
{
    /// <summary>Runs the calibration. <paramref name="log"/> receives one line per measurement.</summary>
    public static MachineRates Measure(IProgress<string>? log = null, CancellationToken cancel = default)
    {
        var d = MachineRates.Default;
        var one = new AttentionSettings { Threads = 1, Cancellation = cancel };

        // Exact kernel: t = F/flops + E/exps on a flop-bound (d = 64) and an exp-bound (d = 1) shape.
        var (f1, e1, t1) = TimeExact(512, 64, one);
        var (f2, e2, t2) = TimeExact(2048, 1, one);
        double det = f1 * e2 - f2 * e1;
        double x = (t1 * e2 - t2 * e1) / det, y = (f1 * t2 - f2 * t1) / det; // seconds per flop, per exp
        double flops = x > 0 ? 1 / x : f1 / t1, exps = y > 0 ? 1 / y : e2 / t2;
        log?.Report($"exact kernel: {flops / 1e9:F1} GFLOP/s and {exps / 1e9:F2} G exp/s per thread");

        // Polynomial method: its counted float64 flops over its time.
        var poly = Instance(8192, 4, 1, 0.25, seed: 11);
        var polyAlg = AttentionAlgorithms.Create("polynomial");
        var polySettings = one with { Epsilon = 1e-4 };
        var polyPlan = polyAlg.Plan(poly, polySettings);
        double tp = Best(() => polyPlan.Execute());
        double scalar = polyPlan.Heads[0].Cost.ScalarFlops / tp;
        log?.Report($"polynomial kernels: {scalar / 1e9:F1} GFLOP/s (float64) per thread");

        // Range structures: query time = S/scalar + N·node + L·leaf on two instances (few / many leaf keys).
        var (n1, l1, s1, r1) = TimeRange(Instance(8192, 2, 100, 1, seed: 21), one with { Epsilon = 1e-4 });
        var (n2, l2, s2, r2) = TimeRange(Instance(8192, 2, 3, 1, seed: 22), one with { Epsilon = 1e-4 });
        double a1 = Math.Max(r1 - s1 / scalar, 0.1 * r1), a2 = Math.Max(r2 - s2 / scalar, 0.1 * r2);
        double det2 = n1 * l2 - n2 * l1;
        double node = det2 != 0 ? (a1 * l2 - a2 * l1) / det2 : double.NaN, leaf = det2 != 0 ? (n1 * a2 - n2 * a1) / det2 : double.NaN;
        if (!(node > 0 && leaf > 0))
        {
            // The two mixes could not be told apart: keep the defaults' node:leaf ratio and fit one scale.
            double ratio = d.SecondsPerTreeNode / d.SecondsPerLeafKey;
            leaf = (a1 + a2) / ((n1 + n2) * ratio + l1 + l2);
            node = ratio * leaf;
        }
        log?.Report($"range structures: {node * 1e9:F1} ns per node, {leaf * 1e9:F1} ns per leaf key");

        double bandwidth = Triad(cancel);
        log?.Report($"memory bandwidth: {bandwidth / 1e9:F1} GB/s (triad, all threads)");
        return new MachineRates(flops, exps, scalar, bandwidth, node, leaf)
        {
            Source = $"calibrated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} processors",
        };
    }

    private static AttentionProblem<double> Instance(int n, int d, double bound, double scale, int seed)
    {
        var rng = new Random(seed);
        double[] M(int len, double b) { var a = new double[len]; for (int i = 0; i < len; i++) a[i] = (2 * rng.NextDouble() - 1) * b; return a; }
        return new AttentionProblem<double>(M(n * d, bound), M(n * d, bound), M(n * d, 1), n, n, d, d, 1, scale);
    }

    private static (double Flops, double Exps, double Seconds) TimeExact(int n, int d, AttentionSettings settings)
    {
        var rng = new Random(n + d);
        float[] M(int len) { var a = new float[len]; for (int i = 0; i < len; i++) a[i] = (float)(2 * rng.NextDouble() - 1); return a; }
        var p = new AttentionProblem<float>(M(n * d), M(n * d), M(n * d), n, n, d, d);
        var plan = AttentionAlgorithms.Create("exact").Plan(p, settings);
        var output = new float[p.OutputLength];
        double t = Best(() => plan.Execute(output));
        return (plan.Heads[0].Cost.Flops, plan.Heads[0].Cost.ExpEvaluations, t);
    }

    private static (double Nodes, double Leaves, double Scalar, double Seconds) TimeRange(AttentionProblem<double> p, AttentionSettings settings)
    {
        var alg = AttentionAlgorithms.Create("range");
        var head = p.Head(0);
        var plan = alg.PlanHeadFor(head, new PlanningContext(settings, settings.Epsilon!.Value, 1, MeasureCost: true));
        var output = new double[p.OutputLength];
        double t = Best(() => alg.ExecuteHeadFor(plan, head, output, new ExecutionContext(settings, settings.Epsilon.Value, 1, null)));
        plan.Release(); // the prepared structure's pooled moments
        return (plan.Cost.TreeNodes, plan.Cost.LeafKeys, plan.Cost.ScalarFlops, t);
    }

    /// <summary>STREAM triad a = b + s·c over three 32 MiB arrays (larger than common last-level caches), all threads.</summary>
    private static double Triad(CancellationToken cancel)
    {
        const int Len = 4 << 20; // doubles per array: 32 MiB
        var a = new double[Len]; var b = new double[Len]; var c = new double[Len];
        Array.Fill(b, 1.0); Array.Fill(c, 2.0);
        int threads = Environment.ProcessorCount, chunk = (Len + threads - 1) / threads;
        double seconds = Best(() => Parallel.For(0, threads, new ParallelOptions { CancellationToken = cancel }, t =>
        {
            int lo = t * chunk, hi = Math.Min(Len, lo + chunk);
            var aa = a.AsSpan(lo, hi - lo); var bb = b.AsSpan(lo, hi - lo); var cc = c.AsSpan(lo, hi - lo);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(cc, 3.0, bb, aa);
        }), 5);
        return 3.0 * 8 * Len / seconds;
    }

    private static double Best(Action run, int repeats = 3)
    {
        run(); // warm-up: JIT and first touch
        double best = double.PositiveInfinity;
        for (int r = 0; r < repeats; r++)
        {
            var sw = Stopwatch.StartNew();
            run();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}
