using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// Measures the machine's FMA peak in GFLOP/s: a register-only loop of 10 independent FMA chains at the widest SIMD
/// width, through the same SIMD abstraction the exact kernel uses, on the given number of threads (2 flops per lane
/// per FMA).
/// </summary>
internal static class FmaPeak
{
    private const int Chains = 10;

    public static double MeasureGflops(int threads, bool float32, double seconds = 0.3)
    {
        Func<long, double> loop = (Vector512.IsHardwareAccelerated, float32) switch
        {
            (true, true) => it => Loop<float, Vector512<float>, Simd512F>(it),
            (true, false) => it => Loop<double, Vector512<double>, Simd512D>(it),
            (false, true) => it => Loop<float, Vector256<float>, Simd256F>(it),
            (false, false) => it => Loop<double, Vector256<double>, Simd256D>(it),
        };
        int lanes = Vector512.IsHardwareAccelerated ? (float32 ? 16 : 8) : (float32 ? 8 : 4);
        long iterations = 1 << 22;
        // Calibrate once single-threaded so a run lasts about `seconds`.
        var sw = Stopwatch.StartNew();
        loop(iterations);
        double t = sw.Elapsed.TotalSeconds;
        iterations = Math.Max(1 << 20, (long)(iterations * seconds / Math.Max(t, 1e-6)));
        double best = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            var start = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => loop(iterations));
            double el = start.Elapsed.TotalSeconds;
            best = Math.Max(best, Chains * 2.0 * lanes * iterations * threads / el / 1e9);
        }
        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static double Loop<T, TV, TS>(long iterations)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
    {
        TV a = TS.Broadcast(T.CreateTruncating(0.999)), b = TS.Broadcast(T.CreateTruncating(1e-7));
        TV c0 = a, c1 = a, c2 = a, c3 = a, c4 = a, c5 = a, c6 = a, c7 = a, c8 = a, c9 = a;
        for (long i = 0; i < iterations; i++)
        {
            c0 = TS.Fma(c0, a, b); c1 = TS.Fma(c1, a, b); c2 = TS.Fma(c2, a, b); c3 = TS.Fma(c3, a, b); c4 = TS.Fma(c4, a, b);
            c5 = TS.Fma(c5, a, b); c6 = TS.Fma(c6, a, b); c7 = TS.Fma(c7, a, b); c8 = TS.Fma(c8, a, b); c9 = TS.Fma(c9, a, b);
        }
        var sum = TS.Add(TS.Add(TS.Add(c0, c1), TS.Add(c2, c3)), TS.Add(TS.Add(TS.Add(c4, c5), TS.Add(c6, c7)), TS.Add(c8, c9)));
        return double.CreateTruncating(TS.SumAcross(sum));
    }
}
