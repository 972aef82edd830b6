using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// The machine's FMA peak in GFLOP/s: a register-only loop of 10 independent FMA chains at the widest SIMD width, through
/// the same SIMD ladder the kernels use (<see cref="SimdDispatch"/>), on the given number of threads (2 flops per lane per
/// FMA). One call of <see cref="MeasureOnce"/> is a short run; callers keep the best of several, interleaved with the
/// kernel's runs, so that a shared machine's bad moments do not set the peak.
/// </summary>
internal static class FmaPeak
{
    private const int Chains = 10;

    /// <summary>Best of <paramref name="runs"/> short runs of about <paramref name="seconds"/> each.</summary>
    public static double MeasureGflops(int threads, bool float32, double seconds = 0.1, int runs = 5)
    {
        double best = 0;
        for (int r = 0; r < runs; r++) best = Math.Max(best, MeasureOnce(threads, float32, seconds));
        return best;
    }

    /// <summary>One short run (about <paramref name="seconds"/>) on <paramref name="threads"/> threads.</summary>
    public static double MeasureOnce(int threads, bool float32, double seconds = 0.05) =>
        float32 ? Timed<float>(threads, seconds) : Timed<double>(threads, seconds);

    private static double Timed<T>(int threads, double seconds) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var loop = new Loop { Iterations = Limits.Calibrate<T, Loop>(seconds) };
        double elapsed = Limits.RunOnThreads<T, Loop>(loop, threads);
        return Chains * 2.0 * loop.Lanes<T>() * loop.Iterations * threads / elapsed / 1e9;
    }

    private struct Loop : ILimitLoop
    {
        public long Iterations { get; set; }

        [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
        public double Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            TV a = TS.Broadcast(T.CreateTruncating(0.999)), b = TS.Broadcast(T.CreateTruncating(1e-7));
            TV c0 = a, c1 = a, c2 = a, c3 = a, c4 = a, c5 = a, c6 = a, c7 = a, c8 = a, c9 = a;
            for (long i = 0; i < Iterations; i++)
            {
                c0 = TS.Fma(c0, a, b); c1 = TS.Fma(c1, a, b); c2 = TS.Fma(c2, a, b); c3 = TS.Fma(c3, a, b); c4 = TS.Fma(c4, a, b);
                c5 = TS.Fma(c5, a, b); c6 = TS.Fma(c6, a, b); c7 = TS.Fma(c7, a, b); c8 = TS.Fma(c8, a, b); c9 = TS.Fma(c9, a, b);
            }
            var sum = TS.Add(TS.Add(TS.Add(c0, c1), TS.Add(c2, c3)), TS.Add(TS.Add(TS.Add(c4, c5), TS.Add(c6, c7)), TS.Add(c8, c9)));
            return double.CreateTruncating(TS.SumAcross(sum));
        }
    }
}

/// <summary>
/// The exp limit in G exp/s: the kernels' own vectorised <see cref="ISimd{T,TV}.Exp2"/> in a register-only loop (two
/// independent exp₂ per iteration summed into two accumulators, arguments in [−4.3, −0.3]) at the widest width, on the given
/// threads. The small-d kernel does one exp₂ per logit, so logits per second over this is its fraction of the exp limit.
/// </summary>
internal static class ExpLimit
{
    /// <summary>One short run (about <paramref name="seconds"/>) on <paramref name="threads"/> threads, in G exp/s.</summary>
    public static double MeasureOnce(int threads, bool float32, double seconds = 0.05) =>
        float32 ? Timed<float>(threads, seconds) : Timed<double>(threads, seconds);

    private static double Timed<T>(int threads, double seconds) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var loop = new Loop { Iterations = Limits.Calibrate<T, Loop>(seconds) };
        double elapsed = Limits.RunOnThreads<T, Loop>(loop, threads);
        return 2.0 * loop.Lanes<T>() * loop.Iterations * threads / elapsed / 1e9;
    }

    private struct Loop : ILimitLoop
    {
        public long Iterations { get; set; }

        [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
        public double Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            TV s0 = TS.Zero, s1 = TS.Zero;
            TV start0 = TS.Broadcast(T.CreateTruncating(-0.3)), start1 = TS.Broadcast(T.CreateTruncating(-0.7));
            TV step = TS.Broadcast(T.CreateTruncating(-1.0 / 64));
            long done = 0;
            while (done < Iterations)
            {
                TV x0 = start0, x1 = start1;
                long inner = Math.Min(256, Iterations - done);
                for (long i = 0; i < inner; i++)
                {
                    s0 = TS.Add(s0, TS.Exp2(x0)); s1 = TS.Add(s1, TS.Exp2(x1));
                    x0 = TS.Add(x0, step); x1 = TS.Add(x1, step);
                }
                done += inner;
            }
            return double.CreateTruncating(TS.SumAcross(TS.Add(s0, s1)));
        }
    }
}

/// <summary>
/// Memory bandwidth in GB/s, STREAM-style: the triad a = b + s·c over three arrays each larger than the last-level cache
/// (2 × LLC, at least 32 MiB), split across the threads, counting 3 × 4 bytes per element moved (two reads, one write, as
/// STREAM does). The arrays are allocated once and first touched in parallel.
/// </summary>
internal sealed class Bandwidth
{
    private readonly float[] _a, _b, _c;

    public Bandwidth(int threads)
    {
        long bytes = Math.Max(2 * CpuCaches.LastLevel, 32L << 20);
        int length = (int)(bytes / sizeof(float)) / 64 * 64;
        _a = GC.AllocateUninitializedArray<float>(length, pinned: true);
        _b = GC.AllocateUninitializedArray<float>(length, pinned: true);
        _c = GC.AllocateUninitializedArray<float>(length, pinned: true);
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var (lo, hi) = Chunk(length, t, threads);
            for (int i = lo; i < hi; i++) { _a[i] = 0; _b[i] = 1; _c[i] = 2; }
        });
        Threads = threads;
    }

    public int Threads { get; }

    /// <summary>One triad pass; GB/s.</summary>
    public unsafe double MeasureOnce()
    {
        int length = _a.Length, threads = Threads;
        var sw = Stopwatch.StartNew();
        fixed (float* a = _a) fixed (float* b = _b) fixed (float* c = _c)
        {
            nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                var (lo, hi) = Chunk(length, t, threads);
                var triad = new Triad { A = (float*)pa + lo, B = (float*)pb + lo, C = (float*)pc + lo, Length = hi - lo };
                SimdDispatch.Run<float, Triad, int>(ref triad);
            });
        }
        double seconds = sw.Elapsed.TotalSeconds;
        return 3.0 * sizeof(float) * length / seconds / 1e9;
    }

    private static (int, int) Chunk(int length, int t, int threads)
    {
        int per = (length / threads + 63) / 64 * 64;
        int lo = Math.Min(length, t * per);
        return (lo, Math.Min(length, lo + per));
    }

    private unsafe struct Triad : ISimdKernel<int>
    {
        public float* A, B, C;
        public int Length;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public int Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            T* a = (T*)A, b = (T*)B, c = (T*)C;
            int w = TS.Count, i = 0;
            TV s = TS.Broadcast(T.CreateTruncating(3.0));
            for (; i + 2 * w <= Length; i += 2 * w)
            {
                TS.Store(TS.Fma(s, TS.Load(ref c[i]), TS.Load(ref b[i])), ref a[i]);
                TS.Store(TS.Fma(s, TS.Load(ref c[i + w]), TS.Load(ref b[i + w])), ref a[i + w]);
            }
            for (; i < Length; i++) a[i] = b[i] + T.CreateTruncating(3.0) * c[i];
            return 0;
        }
    }
}

/// <summary>A register-only loop of the machine limits, run through the SIMD ladder.</summary>
internal interface ILimitLoop : ISimdKernel<double>
{
    long Iterations { get; set; }
}

internal static class Limits
{
    /// <summary>Vector lanes of <typeparamref name="T"/> at the widest width.</summary>
    public static int Lanes<T>(this ILimitLoop _) where T : unmanaged => SimdInfo.Float32Lanes == 1 ? 1 : SimdInfo.Float32Lanes * 4 / Unsafe.SizeOf<T>();

    /// <summary>Iterations for about <paramref name="seconds"/> on one thread (one timed calibration run).</summary>
    public static long Calibrate<T, TLoop>(double seconds) where T : unmanaged, IBinaryFloatingPointIeee754<T> where TLoop : struct, ILimitLoop
    {
        var loop = new TLoop { Iterations = 1 << 16 };
        SimdDispatch.Run<T, TLoop, double>(ref loop); // JIT
        var sw = Stopwatch.StartNew();
        loop.Iterations = 1 << 18;
        SimdDispatch.Run<T, TLoop, double>(ref loop);
        double t = Math.Max(sw.Elapsed.TotalSeconds, 1e-6);
        return Math.Max(1 << 16, (long)((1 << 18) * seconds / t));
    }

    /// <summary>Runs the loop on every thread at once; wall seconds.</summary>
    public static double RunOnThreads<T, TLoop>(TLoop loop, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T> where TLoop : struct, ILimitLoop
    {
        var sw = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
        {
            var local = loop;
            SimdDispatch.Run<T, TLoop, double>(ref local);
        });
        return sw.Elapsed.TotalSeconds;
    }
}
