using System.Numerics;

namespace FastAttention;

/// <summary>
/// One attention problem (Alman–Song Def. 1.1/1.2, Gupta et al. Def. 1.1): Att(Q,K,V) = D⁻¹·exp(s·QKᵀ)·V with
/// D = diag(exp(s·QKᵀ)·1). Q is [heads, n, d], K is [kvHeads, m, d], V is [kvHeads, m, dv], all row-major contiguous;
/// heads = batch × query heads of a [b, h, n, d] tensor. Grouped-query (and multi-query) attention: with fewer K/V
/// heads than query heads, query head h reads K/V head h / (heads / kvHeads) — no copy. <see cref="Mask"/> adds
/// per-batch key lengths, a boolean mask, an additive bias, a sliding window and the causal alignment.
/// Immutable; shapes are validated at construction.
/// </summary>
/// <typeparam name="T">float, double or Half (Half is computed with float32 accumulation).</typeparam>
public sealed class AttentionProblem<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    private double _qMax = double.NaN, _kMax = double.NaN, _vMax = double.NaN;
    // The exact kernel's rounding-bound statistics per K/V head, computed once (like the maxima above): the problem's
    // data are read-only by contract, and grouped-query heads share their K/V head's entry.
    private Exact.ExactRoundingBound.KeyStatistics?[]? _keyStats;

    /// <summary>The K/V statistics of <paramref name="head"/>'s K/V head, computed once with <paramref name="threads"/>.</summary>
    internal Exact.ExactRoundingBound.KeyStatistics KeyStatistics(AttentionHead<T> head, int threads)
    {
        var cache = _keyStats ??= new Exact.ExactRoundingBound.KeyStatistics?[KvHeads];
        int g = head.KvIndex;
        if (cache[g] is { } known) return known;
        var computed = Exact.ExactRoundingBound.ComputeStatistics(head, threads);
        cache[g] = computed; // a race computes the same value twice
        return computed;
    }

    /// <summary>
    /// Wraps Q, K, V (not copied: the memory must not change while the problem is in use) and validates them.
    /// </summary>
    /// <param name="q">Queries, [heads, n, d] row-major: element (h, i, c) at (h·n + i)·d + c.</param>
    /// <param name="k">Keys, [kvHeads, m, d] row-major.</param>
    /// <param name="v">Values, [kvHeads, m, dv] row-major.</param>
    /// <param name="n">Queries per head (rows of Q), ≥ 1.</param>
    /// <param name="m">Keys per head (rows of K and V), ≥ 1; n ≠ m is allowed.</param>
    /// <param name="d">Head dimension of Q and K, ≥ 1.</param>
    /// <param name="dv">Value dimension (columns of V and of the output), ≥ 1; dv ≠ d is allowed.</param>
    /// <param name="heads">Independent heads (batch × heads of a [b, h, n, d] tensor), ≥ 1.</param>
    /// <param name="scale">The logit scale s in exp(s·QKᵀ); null means 1/√d (PyTorch). Must be finite.</param>
    /// <param name="causal">Causal mask: query i attends to keys j ≤ i (top-left, PyTorch <c>is_causal</c>) or j ≤ i + m − n
    /// (bottom-right, with <see cref="AttentionMask.CausalAlignment"/>).</param>
    /// <param name="mask">Key lengths, boolean mask, bias, window and causal alignment; null = none.</param>
    /// <param name="kvHeads">K/V heads over the whole batch (null = heads): fewer is grouped-query attention, query head
    /// h reading K/V head h / (heads / kvHeads); K and V are then [kvHeads, m, ·].</param>
    /// <param name="batch">The batch size b (heads and kvHeads are multiples of it); key lengths and the mask index it.</param>
    /// <exception cref="ArgumentException">T is not float, double or Half; a length does not match its shape; the scale
    /// is not finite; Q (or K, V within the key lengths) holds a NaN or an infinity (the message names the array and the
    /// flat index); the mask does not fit (key lengths, broadcast shapes, window) or its bias is NaN or +∞ at a pair
    /// that takes part.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension or <paramref name="heads"/> is below 1, or the batch or
    /// K/V head count does not divide as required.</exception>
    public AttentionProblem(ReadOnlyMemory<T> q, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v,
        int n, int m, int d, int dv, int heads = 1, double? scale = null, bool causal = false,
        AttentionMask? mask = null, int? kvHeads = null, int batch = 1)
        : this(q, k, v, n, m, d, dv, heads, scale, causal, mask, kvHeads, batch, kvFrom: null)
    {
    }

    /// <summary>The constructor; <paramref name="kvFrom"/> (same K, V and mask) means K and V were checked already and
    /// their cached statistics carry over.</summary>
    private AttentionProblem(ReadOnlyMemory<T> q, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v,
        int n, int m, int d, int dv, int heads, double? scale, bool causal,
        AttentionMask? mask, int? kvHeads, int batch, AttentionProblem<T>? kvFrom)
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double) && typeof(T) != typeof(Half))
            ThrowHelper.Argument(nameof(T), $"element type {typeof(T).Name} is not supported; use float, double or Half.");
        if (heads < 1) ThrowHelper.ArgumentOutOfRange(nameof(heads), $"heads must be at least 1 (got {heads}).");
        if (n < 1) ThrowHelper.ArgumentOutOfRange(nameof(n), $"the number of queries n must be at least 1 (got {n}).");
        if (m < 1) ThrowHelper.ArgumentOutOfRange(nameof(m), $"the number of keys m must be at least 1 (got {m}).");
        if (d < 1) ThrowHelper.ArgumentOutOfRange(nameof(d), $"the head dimension d must be at least 1 (got {d}).");
        if (dv < 1) ThrowHelper.ArgumentOutOfRange(nameof(dv), $"the value dimension dv must be at least 1 (got {dv}).");
        if (batch < 1 || heads % batch != 0)
            ThrowHelper.ArgumentOutOfRange(nameof(batch), $"the batch size must be at least 1 and divide heads = {heads} (got {batch}).");
        int kvh = kvHeads ?? heads;
        if (kvh < 1 || kvh % batch != 0 || (heads / batch) % (kvh / batch) != 0)
            ThrowHelper.ArgumentOutOfRange(nameof(kvHeads), $"K/V heads must be a multiple of the batch {batch} whose count per batch divides the query heads per batch {heads / batch} (got kvHeads = {kvh}, heads = {heads}).");
        CheckLength(nameof(q), q.Length, (long)heads * n * d, $"heads×n×d = {heads}×{n}×{d}");
        CheckLength(nameof(k), k.Length, (long)kvh * m * d, $"kvHeads×m×d = {kvh}×{m}×{d}");
        CheckLength(nameof(v), v.Length, (long)kvh * m * dv, $"kvHeads×m×dv = {kvh}×{m}×{dv}");
        double s = scale ?? 1.0 / Math.Sqrt(d);
        if (!double.IsFinite(s)) ThrowHelper.Argument(nameof(scale), $"the scale must be a finite number (got {s}).");
        mask ??= AttentionMask.None;
        Q = q; K = k; V = v; N = n; M = m; D = d; Dv = dv; Heads = heads; Scale = s; Causal = causal;
        KvHeads = kvh; Batch = batch; Mask = mask;
        CheckMask(mask);
        CheckFinite(nameof(q), q.Span);
        if (kvFrom is not null)
        {
            // The same K, V and mask as a problem that checked them: their maxima and the exact kernel's statistics hold.
            _kMax = kvFrom._kMax; _vMax = kvFrom._vMax; _keyStats = kvFrom._keyStats ??= new Exact.ExactRoundingBound.KeyStatistics?[kvh];
            if (mask.Bias is not null) CheckBias(); // its shape depends on n
            return;
        }
        // K and V rows past a batch's key length are never read (padding may hold anything).
        for (int g = 0; g < kvh; g++)
        {
            int len = KeyCountOfBatch(g / (kvh / batch));
            CheckFinite(nameof(k), k.Span.Slice(g * m * d, len * d), g * m * d);
            CheckFinite(nameof(v), v.Span.Slice(g * m * dv, len * dv), g * m * dv);
        }
        if (mask.Bias is not null) CheckBias();
    }

    /// <summary>Queries, [heads, n, d].</summary>
    public ReadOnlyMemory<T> Q { get; }
    /// <summary>Keys, [kvHeads, m, d].</summary>
    public ReadOnlyMemory<T> K { get; }
    /// <summary>Values, [kvHeads, m, dv].</summary>
    public ReadOnlyMemory<T> V { get; }
    /// <summary>n: queries per head (rows of Q and of the output).</summary>
    public int N { get; }
    /// <summary>m: keys per K/V head (rows of K and V) before key lengths shorten a batch element's.</summary>
    public int M { get; }
    /// <summary>d: the head dimension of queries and keys.</summary>
    public int D { get; }
    /// <summary>dv: the value dimension (columns of V and of the output).</summary>
    public int Dv { get; }
    /// <summary>Query heads over the whole batch (batch × query heads per batch element); each is its own n×m attention.</summary>
    public int Heads { get; }
    /// <summary>K/V heads over the whole batch; fewer than <see cref="Heads"/> is grouped-query attention.</summary>
    public int KvHeads { get; }
    /// <summary>The batch size b (key lengths and the mask's leading dimension index it).</summary>
    public int Batch { get; }
    /// <summary>Query heads per batch element, the h of [b, h, n, m].</summary>
    public int HeadsPerBatch => Heads / Batch;
    /// <summary>Query heads that share one K/V head (1 = multi-head attention).</summary>
    public int GroupSize => Heads / KvHeads;
    /// <summary>The logit scale s: A = exp(s·QKᵀ). PyTorch's default is 1/√d, Alman–Song use 1/d, Gupta et al. 1.</summary>
    public double Scale { get; }
    /// <summary>Causal mask: query i attends to keys j ≤ i + o, aligned as <see cref="AttentionMask.CausalAlignment"/> says.</summary>
    public bool Causal { get; }
    /// <summary>Key lengths, boolean mask, bias, window and causal alignment (<see cref="AttentionMask.None"/> when absent).</summary>
    public AttentionMask Mask { get; }

    /// <summary>‖Q‖∞ = max |Q_ij| (measured, all heads).</summary>
    public double QMax => double.IsNaN(_qMax) ? _qMax = MaxAbs(Q.Span) : _qMax;
    /// <summary>‖K‖∞ over the keys that exist.</summary>
    public double KMax => double.IsNaN(_kMax) ? _kMax = MaxAbsRows(K.Span, D) : _kMax;
    /// <summary>‖V‖∞ over the keys that exist.</summary>
    public double VMax => double.IsNaN(_vMax) ? _vMax = MaxAbsRows(V.Span, Dv) : _vMax;
    /// <summary>The papers' entry bound B = max(‖Q‖∞, ‖K‖∞, ‖V‖∞), measured.</summary>
    public double EntryBound => Math.Max(QMax, Math.Max(KMax, VMax));

    /// <summary>Number of output elements, heads·n·dv.</summary>
    public long OutputLength => (long)Heads * N * Dv;

    /// <summary>The K/V head query head h reads: h / (heads / kvHeads).</summary>
    public int KvHead(int h) => h / GroupSize;

    /// <summary>Keys that exist for query head h: its batch element's key length, or m.</summary>
    public int KeyCount(int h) => KeyCountOfBatch(h / HeadsPerBatch);

    private int KeyCountOfBatch(int b) => Mask.HasKeyLengths ? Mask.KeyLengths.Span[b] : M;

    /// <summary>A view of head h.</summary>
    public AttentionHead<T> Head(int h)
    {
        if ((uint)h >= (uint)Heads) ThrowHelper.ArgumentOutOfRange(nameof(h), $"head {h} is outside [0, {Heads}).");
        return new AttentionHead<T>(this, h);
    }

    /// <summary>The same problem with another scale or causal flag (the data is shared, not copied).</summary>
    public AttentionProblem<T> With(double? scale = null, bool? causal = null) =>
        new(Q, K, V, N, M, D, Dv, Heads, scale ?? Scale, causal ?? Causal, Mask, KvHeads, Batch);

    /// <summary>
    /// The same keys, values, heads, scale, causal flag and mask with other queries (n may differ): a decode loop's next
    /// step against an unchanged KV cache. Q is validated; K and V are not scanned again, and what was measured of them
    /// (‖K‖∞, ‖V‖∞ and the exact kernel's rounding-bound statistics, shared from then on) carries over — at m = 65536,
    /// d = 64 the two scans cost twice the decode kernel itself. K and V must not have changed since this problem was
    /// made, which every problem already requires of its data.
    /// </summary>
    /// <param name="q">Queries, [heads, n, d] row-major.</param>
    /// <param name="n">Queries per head, ≥ 1.</param>
    /// <exception cref="ArgumentException">Q's length does not match heads×n×d, Q holds a NaN or an infinity, or the mask's
    /// bias does not broadcast to the new n.</exception>
    public AttentionProblem<T> WithQueries(ReadOnlyMemory<T> q, int n) =>
        new(q, K, V, n, M, D, Dv, Heads, Scale, Causal, Mask, KvHeads, Batch, kvFrom: this);

    /// <summary>The same data with another mask (the data is shared, not copied).</summary>
    public AttentionProblem<T> WithMask(AttentionMask mask) => new(Q, K, V, N, M, D, Dv, Heads, Scale, Causal, mask, KvHeads, Batch);

    private void CheckMask(AttentionMask mask)
    {
        if (mask.HasKeyLengths)
        {
            var lens = mask.KeyLengths.Span;
            if (lens.Length != Batch)
                ThrowHelper.Argument(nameof(mask), $"key lengths have shape ({lens.Length}) but the batch is ({Batch}).");
            for (int b = 0; b < lens.Length; b++)
                if ((uint)lens[b] > (uint)M)
                    ThrowHelper.Argument(nameof(mask), $"key length {lens[b]} of batch element {b} is outside [0, m = {M}].");
        }
        if (mask.Window is { } w && w < 1) ThrowHelper.Argument(nameof(mask), $"the window must be at least 1 (got {w}).");
        mask.BooleanMask?.CheckBroadcastsTo("boolean mask", Batch, HeadsPerBatch, N, M);
        mask.Bias?.CheckBroadcastsTo("bias", Batch, HeadsPerBatch, N, M);
    }

    /// <summary>The bias must be finite or −∞ wherever the rest of the mask lets a pair take part (it is read only there).</summary>
    private void CheckBias()
    {
        var bias = Mask.Bias!;
        var bm = Mask.BooleanMask;
        bool perBatch = bias.Shape[0] > 1 || (bm is not null && bm.Shape[0] > 1) || Mask.HasKeyLengths;
        bool perHead = bias.Shape[1] > 1 || (bm is not null && bm.Shape[1] > 1);
        bool perRow = bias.Shape[2] > 1 || (bm is not null && bm.Shape[2] > 1) || Causal || Mask.Window is not null;
        for (int b = 0; b < (perBatch ? Batch : 1); b++)
            for (int hl = 0; hl < (perHead ? HeadsPerBatch : 1); hl++)
            {
                var head = Head(b * HeadsPerBatch + hl);
                for (int i = 0; i < (perRow ? N : 1); i++)
                {
                    var row = head.Row(i);
                    for (int j = row.Lo; j < row.Hi; j++)
                    {
                        if (!row.IsVisible(j)) continue;
                        double x = row.BiasAt(j);
                        if (double.IsNaN(x) || double.IsPositiveInfinity(x))
                            ThrowHelper.Argument(nameof(AttentionMask.Bias), $"the bias is {x} at (batch {b}, head {hl}, query {i}, key {j}), a pair the mask lets take part; only finite values or −∞ may be read.");
                    }
                }
            }
    }

    /// <summary>The same problem with other values (same shape); used for the exact power-of-two rescaling of V.</summary>
    internal AttentionProblem<T> WithValues(ReadOnlyMemory<T> v) => new(Q, K, v, N, M, D, Dv, Heads, Scale, Causal, Mask, KvHeads, Batch);

    private static void CheckLength(string name, int actual, long expected, string shape)
    {
        if (actual != expected)
            ThrowHelper.Argument(name, $"{name} has {actual} elements but the shape {shape} needs {expected}.");
    }

    private static void CheckFinite(string name, ReadOnlySpan<T> data, int offset = 0)
    {
        if (System.Numerics.Tensors.TensorPrimitives.IsFiniteAll(data)) return; // vectorised; the scan below only names the culprit
        for (int i = 0; i < data.Length; i++)
            if (!T.IsFinite(data[i]))
                ThrowHelper.Argument(name, $"{name} contains a non-finite value ({data[i]}) at flat index {offset + i}.");
    }

    /// <summary>max |x| over the rows of K or V that exist (rows below each K/V head's key length).</summary>
    private double MaxAbsRows(ReadOnlySpan<T> data, int width)
    {
        double best = 0;
        for (int g = 0; g < KvHeads; g++)
        {
            int len = KeyCountOfBatch(g / (KvHeads / Batch));
            best = Math.Max(best, MaxAbs(data.Slice(g * M * width, len * width)));
        }
        return best;
    }

    private static double MaxAbs(ReadOnlySpan<T> data) => Numerics.FloatingPoint.MaxAbs(data);
}

/// <summary>
/// A view of one head of an <see cref="AttentionProblem{T}"/>: spans of Q (n×d), and of its K/V head's keys that exist
/// (<see cref="M"/>×d and <see cref="M"/>×dv: grouped-query heads share them, padding is cut off), and the row masks.
/// </summary>
public readonly struct AttentionHead<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    internal AttentionHead(AttentionProblem<T> p, int h)
    {
        Problem = p; Index = h; M = p.KeyCount(h);
    }

    /// <summary>The problem this head belongs to.</summary>
    public AttentionProblem<T> Problem { get; }
    /// <summary>The query head index h in [0, heads) (over the whole batch).</summary>
    public int Index { get; }
    /// <summary>The K/V head this query head reads.</summary>
    public int KvIndex => Problem.KvHead(Index);
    /// <summary>The batch element.</summary>
    public int BatchIndex => Index / Problem.HeadsPerBatch;
    /// <summary>The query head within its batch element (the h of [b, h, n, m]).</summary>
    public int LocalIndex => Index % Problem.HeadsPerBatch;
    /// <summary>n: queries.</summary>
    public int N => Problem.N;
    /// <summary>m: keys that exist for this head (its batch element's key length, else the problem's m); K and V hold exactly these.</summary>
    public int M { get; }
    /// <summary>d: head dimension.</summary>
    public int D => Problem.D;
    /// <summary>dv: value dimension.</summary>
    public int Dv => Problem.Dv;
    /// <summary>The logit scale s.</summary>
    public double Scale => Problem.Scale;
    /// <summary>True when query i sees keys j ≤ i only.</summary>
    public bool Causal => Problem.Causal;
    /// <summary>The problem's mask (key lengths, boolean mask, bias, window, causal alignment).</summary>
    public AttentionMask Mask => Problem.Mask;
    /// <summary>True when a boolean mask or bias applies to individual pairs (the window is structural: see <see cref="KeyRange"/>).</summary>
    public bool HasPairMask => Problem.Mask.BooleanMask is not null || Problem.Mask.Bias is not null;
    /// <summary>This head's queries, n×d row-major.</summary>
    public ReadOnlySpan<T> Q => Problem.Q.Span.Slice(Index * N * D, N * D);
    /// <summary>This head's keys (its K/V head's first <see cref="M"/> rows), m×d row-major.</summary>
    public ReadOnlySpan<T> K => Problem.K.Span.Slice(KvIndex * Problem.M * D, M * D);
    /// <summary>This head's values (its K/V head's first <see cref="M"/> rows), m×dv row-major.</summary>
    public ReadOnlySpan<T> V => Problem.V.Span.Slice(KvIndex * Problem.M * Dv, M * Dv);
    /// <summary><see cref="Q"/> as memory (for work that outlives a stack frame).</summary>
    public ReadOnlyMemory<T> QMemory => Problem.Q.Slice(Index * N * D, N * D);
    /// <summary><see cref="K"/> as memory.</summary>
    public ReadOnlyMemory<T> KMemory => Problem.K.Slice(KvIndex * Problem.M * D, M * D);
    /// <summary><see cref="V"/> as memory.</summary>
    public ReadOnlyMemory<T> VMemory => Problem.V.Slice(KvIndex * Problem.M * Dv, M * Dv);

    /// <summary>The causal offset o: query i's diagonal is key i + o (0 top-left, m − n bottom-right, with m this head's key count).</summary>
    public int CausalOffset => Problem.Mask.CausalAlignment == CausalAlignment.BottomRight ? M - N : 0;

    /// <summary>True when query rows see a bounded prefix (causal or windowed).</summary>
    public bool HasUpperBound => Problem.Causal || Problem.Mask.Window is not null;

    /// <summary>The structural interval [Lo, Hi) of keys query i may see: key lengths, causal alignment and window
    /// (empty, Lo = Hi, when none). Both ends are non-decreasing in i.</summary>
    public (int Lo, int Hi) KeyRange(int i)
    {
        long diag = (long)i + CausalOffset;
        int hi = HasUpperBound ? (int)Math.Clamp(diag + 1, 0, M) : M;
        int lo = Problem.Mask.Window is { } w ? (int)Math.Clamp(diag - w + 1, 0, M) : 0;
        return (Math.Min(lo, hi), hi);
    }

    /// <summary>Number of keys query i may attend to when only a prefix is hidden (no window, boolean mask or bias): the end of <see cref="KeyRange"/>.</summary>
    public int VisibleKeys(int i) => KeyRange(i).Hi;

    /// <summary>Query row i's mask: its structural interval and, where given, its boolean mask and bias rows.</summary>
    internal RowMask Row(int i)
    {
        var (lo, hi) = KeyRange(i);
        var mask = Problem.Mask;
        ReadOnlySpan<bool> vis = default; int vs = 0;
        ReadOnlySpan<double> bias = default; int bs = 0;
        if (mask.BooleanMask is { } bm) { vis = bm.Data.Span[bm.RowOffset(BatchIndex, LocalIndex, i)..]; vs = bm.ColumnStride; }
        if (mask.Bias is { } bt) { bias = bt.Data.Span[bt.RowOffset(BatchIndex, LocalIndex, i)..]; bs = bt.ColumnStride; }
        return new RowMask(lo, hi, vis, vs, bias, bs);
    }

    /// <summary>Copies this head's Q, K, V to float64 arrays (approximate algorithms work in float64).</summary>
    public (double[] Q, double[] K, double[] V) ToDouble() => (Convert(Q), Convert(K), Convert(V));

    private static double[] Convert(ReadOnlySpan<T> s)
    {
        var r = new double[s.Length];
        for (int i = 0; i < s.Length; i++) r[i] = double.CreateTruncating(s[i]);
        return r;
    }
}
