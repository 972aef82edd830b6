using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using FastAttention.Exact;
using FastAttention.Polynomial;

namespace FastAttention.Tests.Core;

/// <summary>The tensor- and span-first API (<see cref="Attention"/>) against the array API on the same data.</summary>
public class AttentionTensorTests
{
    public static TheoryData<int, int, int, int, int, int, bool> Shapes() => new()
    {
        { 2, 3, 37, 53, 16, 8, false },
        { 2, 3, 37, 53, 16, 8, true },
        { 1, 2, 300, 200, 64, 64, false },
        { 2, 2, 5, 70, 32, 24, true },      // decode path (few queries)
        { 1, 4, 64, 64, 3, 2, false },      // small-d path
        { 3, 1, 130, 129, 64, 40, true },
    };

    private static T[] Random<T>(int count, int seed, double bound = 2) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var rng = new Random(seed);
        var r = new T[count];
        for (int i = 0; i < count; i++) r[i] = T.CreateTruncating((2 * rng.NextDouble() - 1) * bound);
        return r;
    }

    /// <summary>[b, h, r, c] ↔ [b, r, h, c] (the permutation is its own inverse given the matching dimensions).</summary>
    private static T[] Swap<T>(T[] x, int b, int outer, int inner, int c)
    {
        var r = new T[x.Length];
        for (int bi = 0; bi < b; bi++)
            for (int o = 0; o < outer; o++)
                for (int i = 0; i < inner; i++)
                    x.AsSpan(((bi * outer + o) * inner + i) * c, c).CopyTo(r.AsSpan(((bi * inner + i) * outer + o) * c, c));
        return r;
    }

    /// <summary>The array API: <see cref="FlashAttention"/> on the contiguous [b·h, n, d] problem.</summary>
    private static T[] ArrayApi<T>(T[] q, T[] k, T[] v, int b, int h, int n, int m, int d, int dv, bool causal, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        new FlashAttention().Compute(new AttentionProblem<T>(q, k, v, n, m, d, dv, b * h, causal: causal), new AttentionSettings { Threads = threads }).Output;

    private static void AssertBitwise<T>(T[] expected, T[] actual) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (!expected[i].Equals(actual[i])) Assert.Fail($"element {i}: array API {expected[i]}, tensor API {actual[i]}");
    }

    private static void Bhnd<T>(int b, int h, int n, int m, int d, int dv, bool causal) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T[] q = Random<T>(b * h * n * d, 1), k = Random<T>(b * h * m * d, 2), v = Random<T>(b * h * m * dv, 3);
        var expected = ArrayApi(q, k, v, b, h, n, m, d, dv, causal);
        var output = new T[expected.Length];
        Attention.Exact(new ReadOnlyTensorSpan<T>(q, [b, h, n, d]), new ReadOnlyTensorSpan<T>(k, [b, h, m, d]),
            new ReadOnlyTensorSpan<T>(v, [b, h, m, dv]), new TensorSpan<T>(output, [b, h, n, dv]), AttentionLayout.Bhnd, causal: causal);
        AssertBitwise(expected, output);

        var spans = new T[expected.Length];
        Attention.Exact<T>(q, k, v, spans, new AttentionShape(b, h, n, m, d, dv), causal: causal);
        AssertBitwise(expected, spans);
    }

    private static void Bnhd<T>(int b, int h, int n, int m, int d, int dv, bool causal) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T[] q = Random<T>(b * h * n * d, 4), k = Random<T>(b * h * m * d, 5), v = Random<T>(b * h * m * dv, 6);
        var expected = Swap(ArrayApi(q, k, v, b, h, n, m, d, dv, causal), b, h, n, dv);   // [b, n, h, dv]
        T[] qs = Swap(q, b, h, n, d), ks = Swap(k, b, h, m, d), vs = Swap(v, b, h, m, dv);  // [b, n, h, d]
        var output = new T[expected.Length];
        Attention.Exact(new ReadOnlyTensorSpan<T>(qs, [b, n, h, d]), new ReadOnlyTensorSpan<T>(ks, [b, m, h, d]),
            new ReadOnlyTensorSpan<T>(vs, [b, m, h, dv]), new TensorSpan<T>(output, [b, n, h, dv]), AttentionLayout.Bnhd, causal: causal);
        AssertBitwise(expected, output);

        var spans = new T[expected.Length];
        Attention.Exact<T>(qs, ks, vs, spans, new AttentionShape(b, h, n, m, d, dv, AttentionLayout.Bnhd), causal: causal);
        AssertBitwise(expected, spans);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void BhndTensorsAndSpansEqualTheArrayApiBitwise(int b, int h, int n, int m, int d, int dv, bool causal)
    {
        Bhnd<float>(b, h, n, m, d, dv, causal);
        Bhnd<double>(b, h, n, m, d, dv, causal);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void BnhdTensorsRunInPlaceAndEqualTheArrayApiBitwise(int b, int h, int n, int m, int d, int dv, bool causal)
    {
        Bnhd<float>(b, h, n, m, d, dv, causal);
        Bnhd<double>(b, h, n, m, d, dv, causal);
    }

    [Fact]
    public void SlicedInputsAndAStridedDestinationEqualTheArrayApiBitwise()
    {
        int b = 2, h = 3, n = 40, m = 50, d = 16, dv = 12;
        // Inputs: [b, n + 7, h + 1, d + 5] buffers, sliced to rows 3..n+3, heads 1..h+1, columns 2..d+2 (no dimension dense).
        float[] bigQ = Random<float>(b * (n + 7) * (h + 1) * (d + 5), 7), bigK = Random<float>(b * (m + 7) * (h + 1) * (d + 5), 8);
        float[] bigV = Random<float>(b * (m + 7) * (h + 1) * (dv + 5), 9);
        ReadOnlyTensorSpan<float> Slice(float[] big, int rows, int cols) =>
            new ReadOnlyTensorSpan<float>(big, [b, rows + 7, h + 1, cols + 5])
                .Slice([NRange.All, new NRange(3, rows + 3), new NRange(1, h + 1), new NRange(2, cols + 2)]);
        var q = Slice(bigQ, n, d); var k = Slice(bigK, m, d); var v = Slice(bigV, m, dv);
        Assert.False(q.IsDense);

        // The same data, contiguous [b·h, n, d], through the array API.
        float[] Dense(ReadOnlyTensorSpan<float> x, int rows, int cols)
        {
            var r = new float[b * h * rows * cols];
            for (int bi = 0; bi < b; bi++) for (int hh = 0; hh < h; hh++) for (int i = 0; i < rows; i++) for (int c = 0; c < cols; c++)
                r[((bi * h + hh) * rows + i) * cols + c] = x[[bi, i, hh, c]];
            return r;
        }
        var expected = ArrayApi(Dense(q, n, d), Dense(k, m, d), Dense(v, m, dv), b, h, n, m, d, dv, causal: true);

        // Destination: a [b, n, h, dv] view into a [b, n, h, dv + 4] buffer (row padding that must stay untouched).
        var big = new float[b * n * h * (dv + 4)];
        Array.Fill(big, -7f);
        var destination = new TensorSpan<float>(big, [b, n, h, dv + 4]).Slice([NRange.All, NRange.All, NRange.All, new NRange(0, dv)]);
        Attention.Exact(q, k, v, destination, AttentionLayout.Bnhd, causal: true);

        for (int bi = 0; bi < b; bi++) for (int hh = 0; hh < h; hh++) for (int i = 0; i < n; i++)
        {
            for (int c = 0; c < dv; c++)
                Assert.Equal(expected[((bi * h + hh) * n + i) * dv + c], destination[[bi, i, hh, c]]);
            for (int c = dv; c < dv + 4; c++) Assert.Equal(-7f, big[((bi * n + i) * h + hh) * (dv + 4) + c]);
        }
    }

    [Fact]
    public void ComputeGathersOnceAndEqualsThePlanApiBitwise()
    {
        int b = 2, h = 2, n = 512, d = 2;
        double[] q = Random<double>(b * h * n * d, 10, 1), k = Random<double>(b * h * n * d, 11, 1), v = Random<double>(b * h * n * d, 12, 1);
        var settings = new AttentionSettings { Epsilon = 1e-4 };
        var problem = new AttentionProblem<double>(q, k, v, n, n, d, d, b * h, scale: 0.25);
        var expected = new PolynomialAttention().Compute(problem, settings);

        var output = new double[b * n * h * d];   // [b, n, h, d]
        var certificate = Attention.Compute(new PolynomialAttention(), new ReadOnlyTensorSpan<double>(Swap(q, b, h, n, d), [b, n, h, d]),
            new ReadOnlyTensorSpan<double>(Swap(k, b, h, n, d), [b, n, h, d]), new ReadOnlyTensorSpan<double>(Swap(v, b, h, n, d), [b, n, h, d]),
            new TensorSpan<double>(output, [b, n, h, d]), settings, AttentionLayout.Bnhd, scale: 0.25);
        AssertBitwise(Swap(expected.Output, b, h, n, d), output);
        Assert.Equal(expected.Certificate.ErrorBound, certificate.ErrorBound);
        Assert.True(certificate.ErrorBound <= 1e-4);

        // No ε: the approximate algorithm refuses, and the destination is not written.
        Array.Fill(output, 5.0);
        var refused = Assert.Throws<AttentionRefusedException>(() => Attention.Compute(new PolynomialAttention(),
            new ReadOnlyTensorSpan<double>(q, [b, h, n, d]), new ReadOnlyTensorSpan<double>(k, [b, h, n, d]),
            new ReadOnlyTensorSpan<double>(v, [b, h, n, d]), new TensorSpan<double>(output, [b, h, n, d]), new AttentionSettings()));
        Assert.Equal(RefusalReason.EpsilonMissing, refused.Reason);
        Assert.All(output, x => Assert.Equal(5.0, x));
    }

    [Fact]
    public void BadShapesAndStridesThrowNamingTheParameter()
    {
        float[] q = new float[2 * 3 * 8 * 4], k = new float[2 * 3 * 8 * 4], v = new float[2 * 3 * 8 * 4], o = new float[2 * 3 * 8 * 4];
        string Name(Action a) => Assert.ThrowsAny<ArgumentException>(a).ParamName!;
        Assert.Equal("query", Name(() => Attention.Exact(new ReadOnlyTensorSpan<float>(q, [6, 8, 4]), new ReadOnlyTensorSpan<float>(k, [2, 3, 8, 4]),
            new ReadOnlyTensorSpan<float>(v, [2, 3, 8, 4]), new TensorSpan<float>(o, [2, 3, 8, 4]))));
        Assert.Equal("key", Name(() => Attention.Exact(new ReadOnlyTensorSpan<float>(q, [2, 3, 8, 4]), new ReadOnlyTensorSpan<float>(k, [2, 3, 16, 2]),
            new ReadOnlyTensorSpan<float>(v, [2, 3, 8, 4]), new TensorSpan<float>(o, [2, 3, 8, 4]))));
        Assert.Equal("value", Name(() => Attention.Exact(new ReadOnlyTensorSpan<float>(q, [2, 3, 8, 4]), new ReadOnlyTensorSpan<float>(k, [2, 3, 8, 4]),
            new ReadOnlyTensorSpan<float>(v, [2, 4, 6, 4]), new TensorSpan<float>(o, [2, 3, 8, 4]))));
        // Columns not contiguous: [2, 3, 8, 2] with column stride 2.
        Assert.Equal("value", Name(() => Attention.Exact(new ReadOnlyTensorSpan<float>(q, [2, 3, 8, 4]), new ReadOnlyTensorSpan<float>(k, [2, 3, 8, 4]),
            new ReadOnlyTensorSpan<float>(v, [2, 3, 8, 2], [96, 32, 4, 2]), new TensorSpan<float>(o, [2, 3, 8, 2], [48, 16, 2, 1]))));
        // A broadcast (stride 0) destination would write two results to one place.
        Assert.Equal("destination", Name(() => Attention.Exact(new ReadOnlyTensorSpan<float>(q, [2, 3, 8, 4]), new ReadOnlyTensorSpan<float>(k, [2, 3, 8, 4]),
            new ReadOnlyTensorSpan<float>(v, [2, 3, 8, 4]), new TensorSpan<float>(o, [2, 3, 8, 4], [32, 0, 4, 1]))));
        Assert.Equal("destination", Name(() => Attention.Exact<float>(q, k, v, o.AsSpan(1), new AttentionShape(2, 3, 8, 8, 4, 4))));
        Assert.Equal("shape", Name(() => Attention.Exact<float>(q, k, v, o, new AttentionShape(0, 3, 8, 8, 4, 4))));
        v[77] = float.NaN;
        var nan = Assert.Throws<ArgumentException>(() => Attention.Exact<float>(q, k, v, o, new AttentionShape(2, 3, 8, 8, 4, 4, AttentionLayout.Bnhd)));
        Assert.Equal("value", nan.ParamName);
        Assert.Contains("(0, 1, 6, 1)", nan.Message);   // flat 77 = ((0·8 + 6)·3 + 1)·4 + 1 in [b, m, h, d]: (b, h, row, column) = (0, 1, 6, 1)
    }

    /// <summary>Cancelled 30 ms from now by a dedicated thread (a CancelAfter timer runs on the thread pool, which the
    /// kernel's Parallel.For may keep busy until the run ends).</summary>
    private static CancellationTokenSource CancelledSoon()
    {
        var source = new CancellationTokenSource();
        new Thread(() => { Thread.Sleep(30); source.Cancel(); }) { IsBackground = true }.Start();
        return source;
    }

    [Fact]
    public void CancellationMidRunThrows()
    {
        // 8 heads of 2048 × 2048 at d = 64: one head per kernel call, about 8.6 GFLOP in all, so 30 ms is mid-run.
        int b = 1, h = 8, n = 2048, d = 64;
        float[] q = Random<float>(b * h * n * d, 13), k = Random<float>(b * h * n * d, 14), v = Random<float>(b * h * n * d, 15);
        var output = new float[q.Length];
        using var cancel = CancelledSoon();
        var e = Assert.ThrowsAny<OperationCanceledException>(() => Attention.Exact<float>(q, k, v, output, new AttentionShape(b, h, n, n, d, d), cancellationToken: cancel.Token));
        Assert.Equal(cancel.Token, e.CancellationToken);

        // Through Compute the destination is written only on success: a cancelled run leaves it as it was.
        Array.Fill(output, 3f);
        using var cancel2 = CancelledSoon();
        Assert.ThrowsAny<OperationCanceledException>(() => Attention.Compute(new FlashAttention(), new ReadOnlyTensorSpan<float>(q, [b, h, n, d]),
            new ReadOnlyTensorSpan<float>(k, [b, h, n, d]), new ReadOnlyTensorSpan<float>(v, [b, h, n, d]), new TensorSpan<float>(output, [b, h, n, d]),
            new AttentionSettings { Cancellation = cancel2.Token }));
        Assert.All(output, x => Assert.Equal(3f, x));
    }

    /// <summary>A warm call into the caller's buffer allocates nothing beyond the documented working memory, which holds no
    /// n×m term (threads: 1, so that every allocation is on the measured thread).</summary>
    [Theory]
    [InlineData(256)]
    [InlineData(1024)]
    public void AWarmExactCallAllocatesOnlyItsDocumentedWorkingMemory(int n) => WarmCallAllocations(n);

    [Fact, Trait("Category", "Slow")]
    public void AWarmExactCallAt4096AllocatesOnlyItsDocumentedWorkingMemory() => WarmCallAllocations(4096);

    private static void WarmCallAllocations(int n)
    {
        const int d = 64;
        float[] q = Random<float>(n * d, 16), k = Random<float>(n * d, 17), v = Random<float>(n * d, 18);
        var output = new float[n * d];
        // [b, n, h, d] with h = 1 is [b, h, n, d]; use a strided view anyway: two heads in [b, n, h, d], only head 0 read.
        float[] q2 = new float[2 * n * d], k2 = new float[2 * n * d], v2 = new float[2 * n * d];
        for (int i = 0; i < n; i++) { q.AsSpan(i * d, d).CopyTo(q2.AsSpan(2 * i * d)); k.AsSpan(i * d, d).CopyTo(k2.AsSpan(2 * i * d)); v.AsSpan(i * d, d).CopyTo(v2.AsSpan(2 * i * d)); }
        void Call()
        {
            ReadOnlyTensorSpan<float> View(float[] x) =>
                new ReadOnlyTensorSpan<float>(x, [1, n, 2, d]).Slice([NRange.All, NRange.All, new NRange(0, 1), NRange.All]);
            Attention.Exact(View(q2), View(k2), View(v2), new TensorSpan<float>(output, [1, n, 1, d]), AttentionLayout.Bnhd, threads: 1);
        }
        Call();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Call();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        long bound = Attention.ExactWorkingMemoryBytes<float>(new AttentionShape(1, 1, n, n, d, d), threads: 1);
        Assert.True(allocated <= bound, $"allocated {allocated} B > documented working memory {bound} B");
        Assert.True(bound < 4L * n * d * sizeof(float) + (1 << 20), $"the bound {bound} B is not O(m·d)");
        AssertBitwise(ArrayApi(q, k, v, 1, 1, n, n, d, d, causal: false, threads: 1), output);
    }
}
