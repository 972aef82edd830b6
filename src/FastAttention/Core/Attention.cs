using System.Numerics;
using System.Numerics.Tensors;
using FastAttention.Exact;

namespace FastAttention;

/// <summary>How the four dimensions of a Q, K, V or output tensor are ordered.</summary>
public enum AttentionLayout
{
    /// <summary>[batch, heads, sequence, features]: element (b, h, i, c). PyTorch <c>scaled_dot_product_attention</c>'s layout.</summary>
    Bhnd,
    /// <summary>[batch, sequence, heads, features]: element (b, i, h, c). The layout most models project Q, K, V in
    /// (a [b, n, h·d] projection viewed as [b, n, h, d]).</summary>
    Bnhd,
}

/// <summary>The shape of a multi-head attention call on flat spans: Q is b·h·n·d, K b·h·m·d, V b·h·m·dv and the output
/// b·h·n·dv elements, each dense (row-major) in <see cref="Layout"/>.</summary>
public readonly struct AttentionShape
{
    /// <summary>A shape; every dimension must be at least 1.</summary>
    /// <param name="batch">b, the batch size.</param>
    /// <param name="heads">h, the heads per batch entry.</param>
    /// <param name="n">n, the queries per head.</param>
    /// <param name="m">m, the keys (and values) per head.</param>
    /// <param name="d">d, the head dimension of Q and K.</param>
    /// <param name="dv">dv, the value dimension (columns of V and of the output).</param>
    /// <param name="layout">The order of the dimensions in memory.</param>
    public AttentionShape(int batch, int heads, int n, int m, int d, int dv, AttentionLayout layout = AttentionLayout.Bhnd)
    {
        Batch = batch; Heads = heads; N = n; M = m; D = d; Dv = dv; Layout = layout;
    }

    /// <summary>b, the batch size.</summary>
    public int Batch { get; }
    /// <summary>h, the heads per batch entry.</summary>
    public int Heads { get; }
    /// <summary>n, the queries per head.</summary>
    public int N { get; }
    /// <summary>m, the keys per head.</summary>
    public int M { get; }
    /// <summary>d, the head dimension of Q and K.</summary>
    public int D { get; }
    /// <summary>dv, the value dimension.</summary>
    public int Dv { get; }
    /// <summary>The order of the dimensions in memory.</summary>
    public AttentionLayout Layout { get; }
}

/// <summary>
/// Attention in the conventions of System.Numerics.Tensors: read-only tensor spans (or spans and a shape) in, the caller's
/// tensor span (or span) out. For every batch entry b and head h, O[b, h] = Att(Q[b, h], K[b, h], V[b, h]) =
/// D⁻¹·exp(s·QKᵀ)·V with D = diag(exp(s·QKᵀ)·1), row by row the softmax of s·qᵢ·Kᵀ applied to V.
/// </summary>
/// <remarks>
/// <para><b>Layout.</b> Tensors have rank 4, ordered as <see cref="AttentionLayout"/> says: Q [b, h, n, d], K [b, h, m, d],
/// V [b, h, m, dv], output [b, h, n, dv] (or the same with sequence and heads swapped). Any non-negative strides are
/// honoured in place — sliced, permuted and [b, n, h, d] tensors run with no transposing copy — provided the last dimension
/// (the features of one row) is contiguous (stride 1). The output's strides must not make two elements share memory, and
/// the output must not overlap the inputs.</para>
/// <para><b>Error semantics.</b> Exact up to floating-point rounding (the FlashAttention-2 kernel of
/// <see cref="FlashAttention"/>); the result is bitwise the one of <see cref="FlashAttention"/> on the same data. Wrong
/// ranks, shapes or strides, and NaN or infinite inputs, throw <see cref="ArgumentException"/> naming the parameter.
/// Cancelling the token throws <see cref="OperationCanceledException"/>; the heads are processed in chunks of about
/// 4·10⁶ logits, so cancellation takes effect within one chunk, and the destination is then unspecified.</para>
/// <para><b>Memory.</b> Nothing is allocated in proportion to n·m and no input is copied or transposed. The kernel's working
/// memory per chunk of heads is a packed copy of K (⌈m⌉·d elements per head, m rounded up to the SIMD panel), a padded
/// copy of V when dv is not a multiple of the vector width (m·⌈dv⌉ per head), per-thread tiles of at most 384 rows, and
/// split partials when few queries are spread over the keys (see <see cref="ExactWorkingMemoryBytes{T}"/>).</para>
/// </remarks>
public static class Attention
{
    /// <summary>Heads per kernel call are chosen so that a call computes about this many logits: the granularity of cancellation.</summary>
    internal const long ChunkLogits = 1L << 22;

    /// <summary>Exact attention of rank-4 tensors written into <paramref name="destination"/>, strides honoured in place.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="query">Q: [b, h, n, d] (or [b, n, h, d] for <see cref="AttentionLayout.Bnhd"/>); last dimension contiguous.</param>
    /// <param name="key">K: [b, h, m, d] in the same layout.</param>
    /// <param name="value">V: [b, h, m, dv] in the same layout.</param>
    /// <param name="destination">The output: [b, h, n, dv] in the same layout; every element is written.</param>
    /// <param name="layout">The order of the four dimensions of all four tensors.</param>
    /// <param name="scale">The logit scale s; null means 1/√d (PyTorch). Must be finite.</param>
    /// <param name="causal">PyTorch <c>is_causal</c> (top-left): query i sees keys j ≤ i.</param>
    /// <param name="threads">Threads to use; 0 means all cores.</param>
    /// <param name="cancellationToken">Cancels the computation (<see cref="OperationCanceledException"/>).</param>
    /// <exception cref="ArgumentException">A rank, length or stride does not fit, or an input holds a NaN or an infinity
    /// (the message names the parameter and the position).</exception>
    public static unsafe void Exact<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, TensorSpan<T> destination, AttentionLayout layout = AttentionLayout.Bhnd, double? scale = null, bool causal = false, int threads = 0, CancellationToken cancellationToken = default)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var p = Describe<T>(query.Lengths, query.Strides, key.Lengths, key.Strides, value.Lengths, value.Strides, destination.Lengths, destination.Strides, layout, scale, causal);
        int t = Threads(threads);
        cancellationToken.ThrowIfCancellationRequested();
        fixed (T* q = query)
        fixed (T* k = key)
        fixed (T* v = value)
        fixed (T* o = destination)
        {
            p.Q = q; p.K = k; p.V = v; p.O = o;
            CheckFinite(p.Q, p.Batch, p.Heads, p.N, p.D, p.QBatchStride, p.QHeadStride, p.QRowStride, nameof(query));
            CheckFinite(p.K, p.Batch, p.Heads, p.M, p.D, p.KBatchStride, p.KHeadStride, p.KRowStride, nameof(key));
            CheckFinite(p.V, p.Batch, p.Heads, p.M, p.Dv, p.VBatchStride, p.VHeadStride, p.VRowStride, nameof(value));
            Run(p, t, cancellationToken);
        }
    }

    /// <summary>Exact attention of dense spans described by <paramref name="shape"/>, written into <paramref name="destination"/>.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="query">Q: b·h·n·d elements, dense in <see cref="AttentionShape.Layout"/>.</param>
    /// <param name="key">K: b·h·m·d elements.</param>
    /// <param name="value">V: b·h·m·dv elements.</param>
    /// <param name="destination">The output: b·h·n·dv elements, dense in the same layout; every element is written.</param>
    /// <param name="shape">The dimensions and the layout.</param>
    /// <param name="scale">The logit scale s; null means 1/√d (PyTorch). Must be finite.</param>
    /// <param name="causal">PyTorch <c>is_causal</c> (top-left): query i sees keys j ≤ i.</param>
    /// <param name="threads">Threads to use; 0 means all cores.</param>
    /// <param name="cancellationToken">Cancels the computation (<see cref="OperationCanceledException"/>).</param>
    /// <exception cref="ArgumentException">A length does not match the shape, or an input holds a NaN or an infinity.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension of <paramref name="shape"/> is below 1.</exception>
    public static void Exact<T>(ReadOnlySpan<T> query, ReadOnlySpan<T> key, ReadOnlySpan<T> value, Span<T> destination, AttentionShape shape, double? scale = null, bool causal = false, int threads = 0, CancellationToken cancellationToken = default)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Span<nint> lq = stackalloc nint[4], lk = stackalloc nint[4], lv = stackalloc nint[4], lo = stackalloc nint[4];
        DenseLengths(shape, shape.N, shape.D, lq); DenseLengths(shape, shape.M, shape.D, lk);
        DenseLengths(shape, shape.M, shape.Dv, lv); DenseLengths(shape, shape.N, shape.Dv, lo);
        CheckLength(nameof(query), query.Length, lq); CheckLength(nameof(key), key.Length, lk);
        CheckLength(nameof(value), value.Length, lv); CheckLength(nameof(destination), destination.Length, lo);
        Exact(new ReadOnlyTensorSpan<T>(query, lq), new ReadOnlyTensorSpan<T>(key, lk), new ReadOnlyTensorSpan<T>(value, lv),
            new TensorSpan<T>(destination, lo), shape.Layout, scale, causal, threads, cancellationToken);
    }

    /// <summary>
    /// Any algorithm (exact or certified approximate) on rank-4 tensors, through <see cref="AttentionAlgorithm.Plan{T}"/> and
    /// <see cref="AttentionPlan{T}.Execute(Span{T})"/>: the strided heads are gathered once into contiguous [b·h, n, d] buffers
    /// (the layout of <see cref="AttentionProblem{T}"/>), and the result is scattered into <paramref name="destination"/>.
    /// For exact attention without that copy use <see cref="Exact{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, AttentionLayout, Nullable{double}, bool, int, CancellationToken)"/>.
    /// </summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="algorithm">The algorithm, e.g. <c>AttentionAlgorithms.Create("range")</c>.</param>
    /// <param name="query">Q: [b, h, n, d] in <paramref name="layout"/>; last dimension contiguous.</param>
    /// <param name="key">K: [b, h, m, d].</param>
    /// <param name="value">V: [b, h, m, dv].</param>
    /// <param name="destination">The output: [b, h, n, dv]; written only when the computation succeeds.</param>
    /// <param name="settings">ε (required by approximate algorithms: there is no default), threads and the cancellation token.</param>
    /// <param name="layout">The order of the four dimensions of all four tensors.</param>
    /// <param name="scale">The logit scale s; null means 1/√d. Must be finite.</param>
    /// <param name="causal">PyTorch <c>is_causal</c> (top-left): query i sees keys j ≤ i.</param>
    /// <returns>The certificate: ‖T − Att‖∞ ≤ <see cref="ErrorCertificate.ErrorBound"/> over all heads.</returns>
    /// <exception cref="AttentionRefusedException">The algorithm cannot certify ε on this problem (a <see cref="RefusalReason"/> code).</exception>
    /// <exception cref="ArgumentException">A rank, length or stride does not fit, or an input is not finite.</exception>
    public static ErrorCertificate Compute<T>(AttentionAlgorithm algorithm, ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, TensorSpan<T> destination, AttentionSettings settings, AttentionLayout layout = AttentionLayout.Bhnd, double? scale = null, bool causal = false)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        ArgumentNullException.ThrowIfNull(settings);
        var p = Describe<T>(query.Lengths, query.Strides, key.Lengths, key.Strides, value.Lengths, value.Strides, destination.Lengths, destination.Strides, layout, scale, causal);
        int heads = p.Batch * p.Heads;
        var q = new T[(long)heads * p.N * p.D];
        var k = new T[(long)heads * p.M * p.D];
        var v = new T[(long)heads * p.M * p.Dv];
        var output = new T[(long)heads * p.N * p.Dv];
        unsafe
        {
            fixed (T* pq = query) Copy(pq, p.QBatchStride, p.QHeadStride, p.QRowStride, p.Batch, p.Heads, p.N, p.D, q, gather: true);
            fixed (T* pk = key) Copy(pk, p.KBatchStride, p.KHeadStride, p.KRowStride, p.Batch, p.Heads, p.M, p.D, k, gather: true);
            fixed (T* pv = value) Copy(pv, p.VBatchStride, p.VHeadStride, p.VRowStride, p.Batch, p.Heads, p.M, p.Dv, v, gather: true);
        }
        var problem = new AttentionProblem<T>(q, k, v, p.N, p.M, p.D, p.Dv, heads, p.Scale, causal);
        ErrorCertificate certificate;
        using (var plan = algorithm.Plan(problem, settings)) certificate = plan.Execute(output);
        unsafe
        {
            fixed (T* po = destination) Copy(po, p.OBatchStride, p.OHeadStride, p.ORowStride, p.Batch, p.Heads, p.N, p.Dv, output, gather: false);
        }
        return certificate;
    }

    /// <summary>
    /// The working memory (bytes) the exact kernel allocates per call of
    /// <see cref="Exact{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, AttentionLayout, Nullable{double}, bool, int, CancellationToken)"/>
    /// on this shape, summed over its chunks of heads: a packed K (and padded V) per head, per-thread tiles, split partials,
    /// and a fixed allowance of 64 KiB per chunk for the run's bookkeeping. Independent of the layout and the strides.
    /// </summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="shape">The dimensions.</param>
    /// <param name="threads">Threads; 0 means all cores.</param>
    /// <param name="causal">Whether the call is causal (it does not change the bound).</param>
    public static unsafe long ExactWorkingMemoryBytes<T>(AttentionShape shape, int threads = 0, bool causal = false)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        CheckShape(shape);
        int t = Threads(threads);
        long total = 0;
        foreach (var (heads, count) in Chunks(shape.Batch, shape.Heads, shape.N, shape.M))
        {
            var p = FlashParams<T>.Contiguous(null, null, null, null, null, heads, shape.N, shape.M, shape.D, shape.Dv, 1.0, causal);
            var plan = FlashKernels.Plan(p, t);
            long size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
            int w = plan.Lanes, panel = 4 * w;
            long dvPad = (shape.Dv + w - 1) / w * w, mPad = ((long)shape.M + Math.Max(panel, plan.KeyBlock) - 1) / Math.Max(panel, plan.KeyBlock) * Math.Max(panel, plan.KeyBlock);
            long rows = plan.QueryTile + 6;   // the tile rounded up to the micro-kernel's 6 rows
            long acc = Math.Max(dvPad, plan.Path == FlashPath.SmallD ? (1L + shape.Dv) * w : 0);
            long packed = heads * mPad * (shape.D + dvPad);
            long scratch = t * (rows * (shape.D + acc + 2) + Math.Max(rows, 6) * plan.KeyBlock + 3L * w);
            long splits = plan.KeySplits > 1 ? (long)heads * plan.Tiles * plan.KeySplits * plan.QueryTile * (2 + dvPad) : 0;
            total += count * (size * (packed + scratch + splits) + (64 << 10));
        }
        return total;
    }

    // ---- implementation ----

    private static int Threads(int threads)
    {
        if (threads < 0) ThrowHelper.ArgumentOutOfRange(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        return threads > 0 ? threads : Environment.ProcessorCount;
    }

    private static void CheckShape(AttentionShape s)
    {
        if (s.Batch < 1) ThrowHelper.ArgumentOutOfRange("shape", $"the batch size must be at least 1 (got {s.Batch}).");
        if (s.Heads < 1) ThrowHelper.ArgumentOutOfRange("shape", $"the heads must be at least 1 (got {s.Heads}).");
        if (s.N < 1) ThrowHelper.ArgumentOutOfRange("shape", $"the number of queries n must be at least 1 (got {s.N}).");
        if (s.M < 1) ThrowHelper.ArgumentOutOfRange("shape", $"the number of keys m must be at least 1 (got {s.M}).");
        if (s.D < 1) ThrowHelper.ArgumentOutOfRange("shape", $"the head dimension d must be at least 1 (got {s.D}).");
        if (s.Dv < 1) ThrowHelper.ArgumentOutOfRange("shape", $"the value dimension dv must be at least 1 (got {s.Dv}).");
    }

    private static void DenseLengths(AttentionShape s, int rows, int cols, Span<nint> lengths)
    {
        CheckShape(s);
        lengths[0] = s.Batch; lengths[3] = cols;
        if (s.Layout == AttentionLayout.Bhnd) { lengths[1] = s.Heads; lengths[2] = rows; }
        else { lengths[1] = rows; lengths[2] = s.Heads; }
    }

    private static void CheckLength(string name, int actual, ReadOnlySpan<nint> lengths)
    {
        long expected = (long)lengths[0] * lengths[1] * lengths[2] * lengths[3];
        if (actual != expected)
            ThrowHelper.Argument(name, $"{name} has {actual} elements but the shape [{lengths[0]}, {lengths[1]}, {lengths[2]}, {lengths[3]}] needs {expected}.");
    }

    /// <summary>One tensor's dimensions in (batch, head, row, column) order, whatever its layout.</summary>
    private readonly record struct Dims(int B, int H, int Rows, int Cols, long BatchStride, long HeadStride, long RowStride);

    private static Dims Read(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, AttentionLayout layout, string name, string rows, string cols)
    {
        string order = layout == AttentionLayout.Bhnd ? $"[b, h, {rows}, {cols}]" : $"[b, {rows}, h, {cols}]";
        if (layout is not (AttentionLayout.Bhnd or AttentionLayout.Bnhd)) ThrowHelper.ArgumentOutOfRange("layout", $"unknown layout {(int)layout}.");
        if (lengths.Length != 4) ThrowHelper.Argument(name, $"{name} must have rank 4 ({order} for layout {layout}) but has rank {lengths.Length}.");
        for (int i = 0; i < 4; i++)
        {
            if (lengths[i] < 1) ThrowHelper.Argument(name, $"{name} {order} has length {lengths[i]} in dimension {i}; every dimension must be at least 1.");
            if (lengths[i] > int.MaxValue) ThrowHelper.Argument(name, $"{name} {order} has length {lengths[i]} in dimension {i}, above {int.MaxValue}.");
        }
        if (strides[3] != 1 && lengths[3] > 1)
            ThrowHelper.Argument(name, $"{name}'s last dimension ({cols}) must be contiguous (stride 1) but has stride {strides[3]}; copy it into a dense tensor first.");
        int hi = layout == AttentionLayout.Bhnd ? 1 : 2, ri = 3 - hi;
        return new Dims((int)lengths[0], (int)lengths[hi], (int)lengths[ri], (int)lengths[3], strides[0], strides[hi], strides[ri]);
    }

    private static FlashParams<T> Describe<T>(ReadOnlySpan<nint> ql, ReadOnlySpan<nint> qs, ReadOnlySpan<nint> kl, ReadOnlySpan<nint> ks,
        ReadOnlySpan<nint> vl, ReadOnlySpan<nint> vs, ReadOnlySpan<nint> ol, ReadOnlySpan<nint> os, AttentionLayout layout, double? scale, bool causal)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            ThrowHelper.Argument(nameof(T), $"element type {typeof(T).Name} is not supported; use float or double.");
        var q = Read(ql, qs, layout, "query", "n", "d");
        var k = Read(kl, ks, layout, "key", "m", "d");
        var v = Read(vl, vs, layout, "value", "m", "dv");
        var o = Read(ol, os, layout, "destination", "n", "dv");
        if (k.B != q.B || k.H != q.H) ThrowHelper.Argument("key", $"key has batch {k.B} and {k.H} heads but query has batch {q.B} and {q.H} heads.");
        if (k.Cols != q.Cols) ThrowHelper.Argument("key", $"key has head dimension d = {k.Cols} but query has d = {q.Cols}.");
        if (v.B != q.B || v.H != q.H) ThrowHelper.Argument("value", $"value has batch {v.B} and {v.H} heads but query has batch {q.B} and {q.H} heads.");
        if (v.Rows != k.Rows) ThrowHelper.Argument("value", $"value has {v.Rows} rows but key has m = {k.Rows}.");
        if (o.B != q.B || o.H != q.H || o.Rows != q.Rows || o.Cols != v.Cols)
            ThrowHelper.Argument("destination", $"destination is (b, h, n, dv) = ({o.B}, {o.H}, {o.Rows}, {o.Cols}) but the inputs need ({q.B}, {q.H}, {q.Rows}, {v.Cols}).");
        CheckNoOverlap(ol, os);
        double s = scale ?? 1.0 / Math.Sqrt(q.Cols);
        if (!double.IsFinite(s)) ThrowHelper.Argument(nameof(scale), $"the scale must be a finite number (got {s}).");
        return new FlashParams<T>
        {
            Batch = q.B, Heads = q.H, N = q.Rows, M = k.Rows, D = q.Cols, Dv = v.Cols, Scale = s, Causal = causal,
            QBatchStride = q.BatchStride, QHeadStride = q.HeadStride, QRowStride = q.RowStride,
            KBatchStride = k.BatchStride, KHeadStride = k.HeadStride, KRowStride = k.RowStride,
            VBatchStride = v.BatchStride, VHeadStride = v.HeadStride, VRowStride = v.RowStride,
            OBatchStride = o.BatchStride, OHeadStride = o.HeadStride, ORowStride = o.RowStride,
        };
    }

    /// <summary>The destination's elements are distinct: with the dimensions of length &gt; 1 sorted by stride, each stride
    /// exceeds the span of the smaller ones.</summary>
    private static void CheckNoOverlap(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        Span<long> st = stackalloc long[4], len = stackalloc long[4];
        int r = 0;
        for (int i = 0; i < 4; i++)
            if (lengths[i] > 1) { st[r] = strides[i]; len[r] = lengths[i]; r++; }
        for (int i = 1; i < r; i++)
            for (int j = i; j > 0 && st[j] < st[j - 1]; j--) { (st[j], st[j - 1]) = (st[j - 1], st[j]); (len[j], len[j - 1]) = (len[j - 1], len[j]); }
        long extent = 1;
        for (int i = 0; i < r; i++)
        {
            if (st[i] < extent)
                ThrowHelper.Argument("destination", $"destination's strides [{string.Join(", ", strides.ToArray())}] make distinct output elements share memory.");
            extent = st[i] * (len[i] - 1) + extent;
        }
    }

    private static unsafe void CheckFinite<T>(T* x, int batch, int heads, int rows, int cols, long bs, long hs, long rs, string name)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < rows; i++)
                {
                    var row = new ReadOnlySpan<T>(x + b * bs + h * hs + i * rs, cols);
                    if (TensorPrimitives.IsFiniteAll(row)) continue;
                    int c = 0;
                    while (T.IsFinite(row[c])) c++;
                    ThrowHelper.Argument(name, $"{name} contains a non-finite value ({row[c]}) at (b, h, row, column) = ({b}, {h}, {i}, {c}).");
                }
    }

    /// <summary>(heads per kernel call, number of such calls): whole batches when a batch entry is small, else heads of one entry.</summary>
    private static IEnumerable<(int Heads, int Count)> Chunks(int batch, int heads, int n, int m)
    {
        int perCall = (int)Math.Clamp(ChunkLogits / Math.Max(1L, (long)n * m), 1, (long)batch * heads);
        if (perCall >= heads)
        {
            int bc = perCall / heads;
            yield return (bc * heads, batch / bc);
            if (batch % bc != 0) yield return (batch % bc * heads, 1);
        }
        else
        {
            yield return (perCall, batch * (heads / perCall));
            if (heads % perCall != 0) yield return (heads % perCall, batch);
        }
    }

    /// <summary>Runs the kernel on <paramref name="p"/> in chunks of heads (see <see cref="ChunkLogits"/>), checking the token
    /// between chunks, and redoes in float64 the rows whose float logits overflowed (as <see cref="FlashAttention"/> does).</summary>
    private static unsafe void Run<T>(FlashParams<T> p, int threads, CancellationToken token)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int perCall = (int)Math.Clamp(ChunkLogits / Math.Max(1L, (long)p.N * p.M), 1, (long)p.Batch * p.Heads);
        if (perCall >= p.Heads)
        {
            int bc = perCall / p.Heads;
            for (int b0 = 0; b0 < p.Batch; b0 += bc)
            {
                var c = p;
                c.Batch = Math.Min(bc, p.Batch - b0);
                c.Q += b0 * p.QBatchStride; c.K += b0 * p.KBatchStride; c.V += b0 * p.VBatchStride; c.O += b0 * p.OBatchStride;
                RunChunk(c, threads, token);
            }
        }
        else
        {
            for (int b = 0; b < p.Batch; b++)
                for (int h0 = 0; h0 < p.Heads; h0 += perCall)
                {
                    var c = p;
                    c.Batch = 1; c.Heads = Math.Min(perCall, p.Heads - h0);
                    c.Q += b * p.QBatchStride + h0 * p.QHeadStride; c.K += b * p.KBatchStride + h0 * p.KHeadStride;
                    c.V += b * p.VBatchStride + h0 * p.VHeadStride; c.O += b * p.OBatchStride + h0 * p.OHeadStride;
                    RunChunk(c, threads, token);
                }
        }
    }

    private static unsafe void RunChunk<T>(in FlashParams<T> c, int threads, CancellationToken token)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        token.ThrowIfCancellationRequested();
        FlashKernels.Run(c, threads);
        for (int b = 0; b < c.Batch; b++)
            for (int h = 0; h < c.Heads; h++)
                RecomputeNonFinite(c, b, h);
        token.ThrowIfCancellationRequested();
    }

    /// <summary>The strided twin of FlashAttention's overflow fallback: rows with a non-finite output (float logits beyond the
    /// type's range) are recomputed in float64 by <see cref="ReferenceAttention"/>. Allocates only when such a row exists.</summary>
    private static unsafe void RecomputeNonFinite<T>(in FlashParams<T> c, int b, int h)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double[]? q = null, k = null, v = null, row = null;
        for (int i = 0; i < c.N; i++)
        {
            var oi = new Span<T>(c.ORow(b, h, i), c.Dv);
            if (TensorPrimitives.IsFiniteAll<T>(oi)) continue;
            if (q is null)
            {
                q = ToDouble(c.QRow(b, h, 0), c.QRowStride, c.N, c.D);
                k = ToDouble(c.KRow(b, h, 0), c.KRowStride, c.M, c.D);
                v = ToDouble(c.VRow(b, h, 0), c.VRowStride, c.M, c.Dv);
                row = new double[c.Dv];
            }
            ReferenceAttention.Row(q, k!, v!, c.M, c.D, c.Dv, c.Scale, c.Causal, i, row);
            for (int col = 0; col < c.Dv; col++) oi[col] = T.CreateTruncating(row![col]);
        }
    }

    private static unsafe double[] ToDouble<T>(T* x, long rowStride, int rows, int cols)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var r = new double[(long)rows * cols];
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++) r[(long)i * cols + c] = double.CreateTruncating(x[i * rowStride + c]);
        return r;
    }

    /// <summary>Copies between a strided tensor (base <paramref name="x"/>, strides in (batch, head, row) order) and a contiguous
    /// [b·h, rows, cols] array, in the direction <paramref name="gather"/> says; rows of <paramref name="cols"/> elements.</summary>
    private static unsafe void Copy<T>(T* x, long bs, long hs, long rs, int batch, int heads, int rows, int cols, Span<T> dense, bool gather)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < rows; i++)
                {
                    var strided = new Span<T>(x + b * bs + h * hs + i * rs, cols);
                    var flat = dense.Slice((int)((((long)b * heads + h) * rows + i) * cols), cols);
                    if (gather) strided.CopyTo(flat); else flat.CopyTo(strided);
                }
    }
}
