using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using FastAttention.Exact;

namespace FastAttention.RangeSearch;

/// <summary>
/// The one moment tree of the range-search family: the halfspace range-searching structure of Gupta et al. Lemma A.4 /
/// Theorem 3.1 as Algorithm 1 (and, for d = 1, Algorithm 2's sorted keys) use it. Three separate stages:
/// <list type="number">
/// <item><b>Geometry</b> (partition policy): a kd-tree, median split along the widest side of the node's box in the
/// node's frame. For d = 1 this is the sorted key order and the relevant keys of any query are one prefix or suffix
/// (Lemma A.2). A node whose keys lie near a lower-dimensional affine set gets a principal-axis frame (compared per axis
/// by sorted extents, so a constant coordinate never disables it) that its subtree inherits; the frame is kept as a
/// permuted unit lower-triangular basis (LU with partial pivoting of the principal axes), so key coordinates
/// y = L⁻¹Pᵀ(k − o) and query coefficients q̄ = LᵀPᵀq are formed in double-double without any orthogonality defect:
/// q·(k − o) = q̄·y exactly, and a frame is never rejected at large B.</item>
/// <item><b>Moments</b> for one <see cref="CentredExpansion"/>: nodes with at least <see cref="MomentMinimum"/> keys store
/// Σ_j u_j^β·(1, v_j) with u = (y − c)/w ∈ [−1, 1]^d (c, w: the node's centre and half-extents in its frame), by
/// translating the children's moments (same frame) or summing the keys, then multiplied by c_β.</item>
/// <item><b>Traversal</b> (<see cref="MaxSearch"/> — at d = 2 a scan of the keys' <see cref="KeyHull"/> when its
/// certified reach is within the tolerance —, <see cref="Collect"/>) separate from <b>accumulation</b>
/// (<see cref="Accumulate"/>): a traversal produces the work of one query — nodes answered from moments and key ranges
/// summed directly — and can be run alone to count work (the planner's sample-based estimate).</item>
/// </list>
/// <para>Crossing number (honest): a kd-tree guarantees O(m^{1−1/d}) crossed cells only for axis-parallel boundaries;
/// for general halfspaces its worst case is Θ(m) nodes per query (Matoušek's or Chan's partition trees guarantee
/// O(m^{1−1/d})). The frames and the wide expansions (a node is answered from its moments whenever its logit width fits
/// the expansion, whether or not it straddles the threshold) are what keep the measured work low on the adversarial
/// families; no worst-case bound better than Θ(m) per query is claimed.</para>
/// Immutable after <see cref="ComputeMoments"/> until <see cref="ReleaseMoments"/>.
/// </summary>
internal sealed class MomentTree
{
    public const int LeafSize = 16;
    /// <summary>Nodes with at least this many keys are tested for a principal-axis frame.</summary>
    public const int FrameMinimum = 64;
    /// <summary>Keys per chunk when a node sums its keys' moments directly (rounding (chunk + count/chunk)·u).</summary>
    public const int Chunk = 256;
    private const double U = RangeErrorBudget.U;

    private readonly int _m, _d, _dv;
    private readonly double[] _k, _kT, _v, _vT;      // tree order: AoS keys/values and SoA copies for vector sums
    private readonly int[] _index;                   // original position of tree position j
    // Per node, what a traversal reads together, in one record (a visit touched seven arrays): _links holds lo, hi, left,
    // right (stride 4); _box the axis-aligned box's centre then half-widths (stride 2d); _fbox the box in the node's frame,
    // centre (frame coordinates) then half-extents (stride 2d).
    private readonly int[] _links, _depth, _frame;
    private readonly double[] _box, _fbox;
    private readonly double[] _fo, _fl;              // frames: origin (d), unit lower-triangular L (d×d)
    private readonly int[] _fp;                      // frames: pivot coordinate of each frame axis
    private CentredExpansion? _exp;
    private int[] _momentOffset = [];
    private double[] _moments = [];                 // rented from ArrayPool<double>.Shared (see ComputeMoments); used length _momentLength
    private int _momentLength, _nodes;
    // The per-key and per-node arrays above are rented too (longer than used: every length here is from _m and _nodes,
    // never an array's), returned by Release. Fresh, a d = 2, m = 2¹⁸ tree's 20 MB faulted in page by page on every build.
    private readonly List<double[]> _rentedDoubles = [];
    private readonly List<int[]> _rentedInts = [];
    private bool _released;

    private double[] RentDoubles(int length)
    {
        var a = ArrayPool<double>.Shared.Rent(length);
        _rentedDoubles.Add(a);
        return a;
    }

    private int[] RentInts(int length)
    {
        var a = ArrayPool<int>.Shared.Rent(length);
        _rentedInts.Add(a);
        return a;
    }

    /// <summary>Returns every rented array (keys, values, nodes, moments) to the pool; the tree must not be used again.
    /// Idempotent. The caller guarantees that no traversal or build is running.</summary>
    public void Release()
    {
        if (_released) return;
        _released = true;
        ReleaseMoments();
        foreach (var a in _rentedDoubles) ArrayPool<double>.Shared.Return(a);
        foreach (var a in _rentedInts) ArrayPool<int>.Shared.Return(a);
        _rentedDoubles.Clear(); _rentedInts.Clear();
    }
    private int _stride;

    /// <summary>Nodes with at least this many keys build their two subtrees on two threads (when threads are given).</summary>
    public const int ParallelMinimum = 8192;

    /// <summary>Builds the geometry over keys <paramref name="start"/> … start + count − 1 of k (m×d) and v (m×dv), the
    /// subtrees of large nodes on up to <paramref name="threads"/> threads (the same tree, node for node, as one thread).</summary>
    /// <paramref name="axisWeights"/> (optional, d positive entries): an axis-box node splits the axis with the largest
    /// weighted half-extent w_c·weight_c instead of the largest w_c (see <see cref="QueryAxisWeights"/>).
    public MomentTree(double[] k, double[] v, int start, int count, int d, int dv, int threads = 1, double[]? axisWeights = null)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count));
        if (axisWeights is not null && (axisWeights.Length != d || axisWeights.Any(x => !(x > 0 && double.IsFinite(x)))))
            throw new ArgumentException("one positive finite weight per coordinate", nameof(axisWeights));
        _m = count; _d = d; _dv = dv; _axisWeights = axisWeights;
        int[] perm;
        double[] kw;
        if (d == 1)
        {
            // d = 1: the keys sorted once (an LSD radix sort of order-preserving 64-bit keys, O(m)), so every node's
            // median is already at its middle and its box is its first and last key — no selection, no scan per node
            // (at m = 2²⁰ the selections took 10 % of a range run). Ties keep their input order. The sorted keys are
            // decoded from the sorted codes, not gathered through the permutation: at m = 2²⁰ (8 MB of keys) that
            // random gather missed the caches once per key.
            // The codes and the sort's scratch are pooled (fresh arrays fault every page in), the tree keeps only its own
            // permutation and keys.
            using var codeBuffer = new KernelBuffer<long>(count);
            using var codeScratch = new KernelBuffer<long>(count);
            using var itemBuffer = new KernelBuffer<int>(count);
            using var itemScratch = new KernelBuffer<int>(count);
            Span<long> codes = codeBuffer.Span;
            Span<int> items = itemBuffer.Span;
            for (int j = 0; j < count; j++) { codes[j] = unchecked((long)QueryOrder.OrderKey(k[start + j])); items[j] = j; }
            if (QueryOrder.SortByCode(codes, items, codeScratch.Span, itemScratch.Span, 64)) { codes = codeScratch.Span; items = itemScratch.Span; }
            perm = RentInts(count);
            kw = RentDoubles(count);
            for (int j = 0; j < count; j++) { kw[j] = QueryOrder.FromOrderKey(unchecked((ulong)codes[j])); perm[j] = items[j] + start; }
        }
        else
        {
            perm = RentInts(count);
            for (int j = 0; j < count; j++) perm[j] = start + j;
            kw = RentDoubles(count * d);
            Array.Copy(k, start * d, kw, 0, count * d);
        }
        int forks = 0;
        while ((1 << forks) < threads) forks++;
        var b = new Builder(this, kw, perm).Init();
        b.Node(0, count, 0, 0, forks);
        int nodes = _nodes = b.Lo.Count;
        _depth = [.. b.Depth]; _frame = [.. b.Frame];
        _links = RentInts(4 * nodes); _box = RentDoubles(2 * d * nodes); _fbox = RentDoubles(2 * d * nodes);
        for (int i = 0; i < nodes; i++)
        {
            _links[4 * i] = b.Lo[i]; _links[4 * i + 1] = b.Hi[i]; _links[4 * i + 2] = b.Left[i]; _links[4 * i + 3] = b.Right[i];
            for (int c = 0; c < d; c++)
            {
                _box[2 * d * i + c] = b.Bc[i * d + c]; _box[2 * d * i + d + c] = b.Bw[i * d + c];
                _fbox[2 * d * i + c] = b.Fc[i * d + c]; _fbox[2 * d * i + d + c] = b.Fe[i * d + c];
            }
        }
        _fo = [.. b.Fo]; _fl = [.. b.Fl]; _fp = [.. b.Fp];
        FrameCount = _fp.Length / d;
        // One column is its own SoA copy: d = 1 keys and dv = 1 values share the array (at d = 1, m = 2²⁰ the copies were
        // 16 of the tree's 40 bytes per key).
        _k = kw; _v = RentDoubles(count * dv);
        _kT = d == 1 ? kw : RentDoubles(count * d);
        _vT = dv == 1 ? _v : RentDoubles(count * dv);
        _index = perm;
        for (int j = 0; j < count; j++)
        {
            if (d > 1) for (int c = 0; c < d; c++) _kT[c * count + j] = kw[j * d + c];
            int src = perm[j] * dv; // a loop, not Array.Copy: dv is small and a call per key cost 8 % of the build
            if (dv == 1) _v[j] = v[src];
            else for (int c = 0; c < dv; c++) { double x = v[src + c]; _v[j * dv + c] = x; _vT[c * count + j] = x; }
        }
        Depth = _depth.Length == 0 ? 0 : _depth.Max();
        // Built on the first maximum search that would open the root (never at B = 1, where the root answers).
        _hull = new Lazy<KeyHull?>(() => d == 1 ? KeyHull.Extremes(_k, _m) : d == 2 ? KeyHull.TryBuild(_k, _m, _links, _box) : null,
            LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The keys' certified convex hull (d = 2, see <see cref="KeyHull"/>; d = 1 the two extreme keys), or null:
    /// the maximum search scans its vertices when its reach is within the tolerance.</summary>
    private readonly Lazy<KeyHull?> _hull;
    private readonly double[]? _axisWeights;

    /// <summary>
    /// Split weights from the queries: a node's logit half-width is Σ_c |s·q_c|·w_c, so splitting the axis with the
    /// largest expected |q_c|·w_c narrows the children fastest for these queries. Null (split the widest axis, the
    /// plain kd-tree) unless the mean |q_c| differ by more than 2× between coordinates — e.g. keys in a strip with
    /// queries along its normal, where splitting the long axis gains the queries nothing and cut the relevant slab
    /// into O(√m) squares instead of a few slabs. Weights are floored at 1/64 of the largest, so every axis is split
    /// eventually.
    /// </summary>
    internal static double[]? QueryAxisWeights(double[] q, int n, int d)
    {
        if (d < 2 || n < 1) return null;
        var mean = new double[d];
        for (int i = 0; i < n; i++) for (int c = 0; c < d; c++) mean[c] += Math.Abs(q[i * d + c]);
        double mx = mean.Max(), mn = mean.Min();
        if (!(mx > 0) || !double.IsFinite(mx) || mn >= 0.5 * mx) return null;
        var w = new double[d];
        for (int c = 0; c < d; c++) w[c] = Math.Max(mean[c] / mx, 1.0 / 64);
        return w;
    }
    internal KeyHull? Hull => _hull.Value;

    public int Count => _m;
    public int D => _d;
    public int NodeCount => _nodes;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] private int Lo(int node) => _links[4 * node];
    [MethodImpl(MethodImplOptions.AggressiveInlining)] private int Hi(int node) => _links[4 * node + 1];
    [MethodImpl(MethodImplOptions.AggressiveInlining)] private int Left(int node) => _links[4 * node + 2];
    [MethodImpl(MethodImplOptions.AggressiveInlining)] private int Right(int node) => _links[4 * node + 3];
    /// <summary>Frames including the identity (frame 0).</summary>
    public int FrameCount { get; }
    /// <summary>Nodes carrying a principal-axis frame (not the identity).</summary>
    public int OrientedNodes => _frame.Count(f => f != 0);
    public int Depth { get; }
    public CentredExpansion? Expansion => _exp;
    public int MomentMinimum { get; private set; } = int.MaxValue;
    public int MomentNodes { get; private set; }
    /// <summary>Largest rounding (units of 2⁻⁵³ relative to Σ_j|u^β||v_j|) of any stored moment, folding included.</summary>
    public double MomentUnits { get; private set; }
    /// <summary>Bytes held (keys and values twice, boxes, frames, moments).</summary>
    public long Bytes => 8L * ((long)_m * _d * (_d == 1 ? 1 : 2) + (long)_m * _dv * (_dv == 1 ? 1 : 2) + 4L * _d * _nodes + _fo.Length + _fl.Length + _momentLength) + 24L * _nodes;
    public int KeyCount(int node) => Hi(node) - Lo(node);
    /// <summary>Original position of the key at tree position j.</summary>
    public int OriginalIndex(int j) => _index[j];
    public ReadOnlySpan<double> Key(int j) => _k.AsSpan(j * _d, _d);
    /// <summary>The node's tree positions [lo, hi).</summary>
    internal (int Lo, int Hi) Range(int node) => (Lo(node), Hi(node));
    /// <summary>The node's children (−1 for a leaf).</summary>
    internal (int Left, int Right) Children(int node) => (Left(node), Right(node));
    /// <summary>The node's axis box along coordinate c: centre and half-width.</summary>
    internal (double Centre, double HalfWidth) AxisBox(int node, int c) => (_box[2 * _d * node + c], _box[2 * _d * node + _d + c]);

    /// <summary>The node's frame logit half-width h = Σ|ā_c|w_c for the scratch's query (what the traversal compares with H).</summary>
    internal double HalfWidth(Scratch sc, int node)
    {
        Begin(sc);
        Upper(sc, node, out double h);
        return h;
    }

    // ---- geometry --------------------------------------------------------------------------------------------

    /// <summary>The frame coordinates of the keys, allocated once on first use (thread-safe: forked builders share it).</summary>
    private sealed class FrameCoordinateStore(int length)
    {
        private sealed record Arrays(double[] Hi, double[] Lo);
        private Arrays? _arrays; // one reference, published once
        public double[]? Hi => Volatile.Read(ref _arrays)?.Hi;
        public double[]? Lo => Volatile.Read(ref _arrays)?.Lo;
        public void Allocate()
        {
            if (Volatile.Read(ref _arrays) is null) Interlocked.CompareExchange(ref _arrays, new Arrays(new double[length], new double[length]), null);
        }
    }

    private sealed class Builder(MomentTree t, double[] kw, int[] perm, FrameCoordinateStore? store = null)
    {
        public readonly List<int> Lo = [], Hi = [], Left = [], Right = [], Depth = [], Frame = [], Fp = [];
        public readonly List<double> Bc = [], Bw = [], Fc = [], Fe = [], Fo = [], Fl = [];
        // kw: the keys in the current (tree) order, rows moved with perm so every pass over a node is sequential;
        // Frame coordinates (double-double) in the same order, for the current frame: allocated when the first frame is
        // made (most trees have none), one store shared by forked builders (each writes only its own key range).
        private readonly FrameCoordinateStore _store = store ?? new(t._m * t._d);
        private double[]? _yh => _store.Hi;
        private double[]? _yl => _store.Lo;

        public Builder Init()
        {
            int d = t._d;
            for (int c = 0; c < d; c++) { Fo.Add(0); Fp.Add(c); }
            for (int i = 0; i < d * d; i++) Fl.Add(i % (d + 1) == 0 ? 1 : 0);
            return this;
        }

        /// <summary>A builder for a disjoint key range: the same keys, permutation and frame coordinates, the frames so far.</summary>
        private Builder Fork()
        {
            var f = new Builder(t, kw, perm, _store);
            f.Fo.AddRange(Fo); f.Fp.AddRange(Fp); f.Fl.AddRange(Fl);
            return f;
        }

        /// <summary>Appends a forked builder's nodes and new frames, renumbered as one sequential build would have numbered
        /// them (its subtree is built right after this builder's); returns its root's id.</summary>
        private int Splice(Builder f, int framesAtFork)
        {
            int d = t._d, offset = Lo.Count, frameOffset = Fp.Count / d - framesAtFork;
            for (int i = 0; i < f.Lo.Count; i++)
            {
                Lo.Add(f.Lo[i]); Hi.Add(f.Hi[i]); Depth.Add(f.Depth[i]);
                Left.Add(f.Left[i] < 0 ? -1 : f.Left[i] + offset); Right.Add(f.Right[i] < 0 ? -1 : f.Right[i] + offset);
                Frame.Add(f.Frame[i] < framesAtFork ? f.Frame[i] : f.Frame[i] + frameOffset);
            }
            Bc.AddRange(f.Bc); Bw.AddRange(f.Bw); Fc.AddRange(f.Fc); Fe.AddRange(f.Fe);
            for (int i = framesAtFork * d; i < f.Fp.Count; i++) { Fo.Add(f.Fo[i]); Fp.Add(f.Fp[i]); }
            for (int i = framesAtFork * d * d; i < f.Fl.Count; i++) Fl.Add(f.Fl[i]);
            return offset;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public int Node(int lo, int hi, int frame, int depth, int forks = 0)
        {
            int d = t._d, id = Lo.Count;
            Lo.Add(lo); Hi.Add(hi); Left.Add(-1); Right.Add(-1); Depth.Add(depth); Frame.Add(frame);
            Span<double> mn = stackalloc double[d], mx = stackalloc double[d];
            if (d == 1) { mn[0] = kw[lo]; mx[0] = kw[hi - 1]; } // sorted (see the constructor)
            else CoordinateBox(kw.AsSpan(lo * d, (hi - lo) * d), d, mn, mx);
            for (int c = 0; c < d; c++)
            {
                double ctr = 0.5 * (mn[c] + mx[c]);
                Bc.Add(ctr); Bw.Add(Math.Max(mx[c] - ctr, ctr - mn[c]));
            }
            Span<double> fc = stackalloc double[d], fe = stackalloc double[d];
            FrameBox(lo, hi, frame, id, fc, fe);
            if (d >= 2 && hi - lo >= FrameMinimum && TryFrame(lo, hi, fe, out int created))
            {
                frame = created;
                Frame[id] = frame;
                FrameBox(lo, hi, frame, id, fc, fe);
            }
            for (int c = 0; c < d; c++) { Fc.Add(fc[c]); Fe.Add(fe[c]); }
            if (hi - lo > LeafSize)
            {
                int axis = 0;
                var aw = frame == 0 ? t._axisWeights : null;
                if (aw is null) { for (int c = 1; c < d; c++) if (fe[c] > fe[axis]) axis = c; }
                else for (int c = 1; c < d; c++) if (fe[c] * aw[c] > fe[axis] * aw[axis]) axis = c;
                if (fe[axis] > 0)
                {
                    int mid = lo + (hi - lo) / 2;
                    if (d > 1) Select(lo, hi - 1, mid, frame, axis); // d = 1: sorted, the median is at mid
                    int l, r;
                    if (forks > 0 && hi - lo >= 2 * ParallelMinimum)
                    {
                        // The right subtree on another thread, spliced after the left one: the same ids and frames.
                        // Parallel.Invoke runs one side on the calling thread and inlines the other when no worker takes
                        // it, so a build inside a busy pool (heads in parallel) waits on no one.
                        int framesAtFork = Fp.Count / d, left = 0;
                        var right = Fork();
                        Parallel.Invoke(() => left = Node(lo, mid, frame, depth + 1, forks - 1), () => right.Node(mid, hi, frame, depth + 1, forks - 1));
                        l = left;
                        r = Splice(right, framesAtFork);
                    }
                    else
                    {
                        l = Node(lo, mid, frame, depth + 1, forks);
                        r = Node(mid, hi, frame, depth + 1, forks);
                    }
                    Left[id] = l; Right[id] = r;
                }
            }
            return id;
        }

        /// <summary>The node's box in its frame: identity → the axis box; otherwise centre and half-extents of the
        /// double-double frame coordinates, w_c = max_j |(yhi − c) + ylo| exactly as the moments compute it.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void FrameBox(int lo, int hi, int frame, int id, Span<double> fc, Span<double> fe)
        {
            int d = t._d;
            if (frame == 0)
            {
                for (int c = 0; c < d; c++) { fc[c] = Bc[id * d + c]; fe[c] = Bw[id * d + c]; }
                return;
            }
            var yh = _yh!; var yl = _yl!;
            Span<double> mns = stackalloc double[d], mxs = stackalloc double[d];
            CoordinateBox(yh.AsSpan(lo * d, (hi - lo) * d), d, mns, mxs);
            for (int c = 0; c < d; c++)
            {
                double mn = mns[c], mx = mxs[c];
                double ctr = 0.5 * (mn + mx), w = 0;
                for (int j = lo; j < hi; j++)
                {
                    int o = j * d + c;
                    w = Math.Max(w, Math.Abs((yh[o] - ctr) + yl[o]));
                }
                fc[c] = ctr; fe[c] = w;
            }
        }

        /// <summary>
        /// Principal axes of the node's keys (cyclic Jacobi on the covariance), turned into a permuted unit lower-triangular
        /// basis by LU with partial pivoting (|L| ≤ 1). The frame is taken when its sorted extents are much thinner than the
        /// current ones along some axis beyond the widest (extent per axis, so a constant coordinate is no obstacle) and not
        /// much wider in total.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private bool TryFrame(int lo, int hi, ReadOnlySpan<double> current, out int created)
        {
            int d = t._d, n = hi - lo;
            created = 0;
            Span<double> mean = stackalloc double[d], cov = stackalloc double[d * d], r = stackalloc double[d * d], ev = stackalloc double[d];
            // One pass: sums about the node's first key (shifted, so no cancellation at large entries), over at most 1024
            // evenly strided keys — the axes are only a proposal; the extents below and the frame box use every key.
            int step = Math.Max(1, n / 1024), ns = 0;
            for (int j = lo; j < hi; j += step, ns++)
                for (int a = 0; a < d; a++)
                {
                    double xa = kw[j * d + a] - kw[lo * d + a];
                    mean[a] += xa;
                    for (int b2 = a; b2 < d; b2++) cov[a * d + b2] += xa * (kw[j * d + b2] - kw[lo * d + b2]);
                }
            for (int a = 0; a < d; a++)
                for (int b2 = a; b2 < d; b2++) cov[a * d + b2] -= mean[a] * mean[b2] / ns;
            for (int c = 0; c < d; c++) mean[c] = kw[lo * d + c] + mean[c] / ns;
            for (int a = 0; a < d; a++) for (int b2 = 0; b2 < a; b2++) cov[a * d + b2] = cov[b2 * d + a];
            Jacobi(cov, r, d);
            for (int c = 0; c < d; c++) ev[c] = Math.Max(0, cov[c * d + c]);
            {
                // Keys that fill a box of half-widths w have variances ≈ w²/3 along its axes: a frame can only be much
                // thinner when some principal spread is well below the current extents (cheap test before the extents pass).
                Span<double> spread = stackalloc double[d], ext = stackalloc double[d];
                for (int c = 0; c < d; c++) { spread[c] = Math.Sqrt(3 * ev[c] / ns); ext[c] = current[c]; }
                spread.Sort(); ext.Sort();
                bool promising = false;
                for (int i = 0; i < d - 1; i++) if (spread[i] < 0.5 * ext[i]) promising = true;
                if (!promising) return false;
            }
            // Columns of r sorted by eigenvalue, descending.
            Span<int> order = stackalloc int[d];
            for (int c = 0; c < d; c++) order[c] = c;
            for (int a = 1; a < d; a++) for (int b2 = a; b2 > 0 && ev[order[b2]] > ev[order[b2 - 1]]; b2--) (order[b2], order[b2 - 1]) = (order[b2 - 1], order[b2]);
            Span<double> e = stackalloc double[d * d]; // e[row * d + col]
            for (int row = 0; row < d; row++) for (int col = 0; col < d; col++) e[row * d + col] = r[row * d + order[col]];
            // LU with partial pivoting over the columns: pivot coordinate p_l, column l scaled to 1 there and eliminated
            // from the later columns.
            Span<int> piv = stackalloc int[d];
            Span<bool> used = stackalloc bool[d];
            Span<double> l = stackalloc double[d * d];
            for (int col = 0; col < d; col++)
            {
                int best = -1; double bv = -1;
                for (int row = 0; row < d; row++) if (!used[row] && Math.Abs(e[row * d + col]) > bv) { bv = Math.Abs(e[row * d + col]); best = row; }
                if (!(bv > 0)) return false;
                used[best] = true; piv[col] = best;
                double inv = 1 / e[best * d + col];
                for (int row = 0; row < d; row++) e[row * d + col] = row == best ? 1 : e[row * d + col] * inv;
                for (int c2 = col + 1; c2 < d; c2++)
                {
                    double f = e[best * d + c2];
                    if (f == 0) continue;
                    for (int row = 0; row < d; row++) e[row * d + c2] = row == best ? 0 : e[row * d + c2] - f * e[row * d + col];
                }
            }
            for (int i = 0; i < d; i++) for (int col = 0; col < d; col++) l[i * d + col] = col > i ? 0 : col == i ? 1 : e[piv[i] * d + col];
            // Candidate extents (plain float64 is enough to decide).
            Span<double> cmn = stackalloc double[d], cmx = stackalloc double[d], y = stackalloc double[d];
            cmn.Fill(double.PositiveInfinity); cmx.Fill(double.NegativeInfinity);
            for (int j = lo; j < hi; j++)
            {
                for (int i = 0; i < d; i++)
                {
                    double s = kw[j * d + piv[i]] - mean[piv[i]];
                    for (int c = 0; c < i; c++) s -= l[i * d + c] * y[c];
                    y[i] = s;
                    cmn[i] = Math.Min(cmn[i], s); cmx[i] = Math.Max(cmx[i], s);
                }
            }
            Span<double> cand = stackalloc double[d], cur = stackalloc double[d];
            double sumCand = 0, sumCur = 0;
            for (int i = 0; i < d; i++) { cand[i] = 0.5 * (cmx[i] - cmn[i]); cur[i] = current[i]; sumCand += cand[i]; sumCur += cur[i]; }
            cand.Sort(); cur.Sort(); // ascending: index d − 1 is the widest
            // An axis already thinner than 1e-9 of the widest counts as flat: re-framing it again gains nothing and would
            // cut the subtree's moment translations.
            bool thinner = false;
            for (int i = 0; i < d - 1; i++) if (cand[i] < 0.25 * cur[i] && cur[i] > 1e-9 * cur[d - 1]) thinner = true;
            if (!thinner || sumCand > 1.5 * sumCur) return false;
            created = Fp.Count / d; // frame 0 is the identity
            for (int c = 0; c < d; c++) { Fo.Add(mean[c]); Fp.Add(piv[c]); }
            for (int i = 0; i < d * d; i++) Fl.Add(l[i]);
            _store.Allocate();
            var yhs = _yh!; var yls = _yl!;
            Span<double> hiC = stackalloc double[d], loC = stackalloc double[d];
            for (int j = lo; j < hi; j++)
            {
                FrameCoordinates(d, created, kw.AsSpan(j * d, d), hiC, loC,
                    System.Runtime.InteropServices.CollectionsMarshal.AsSpan(Fo), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(Fp),
                    System.Runtime.InteropServices.CollectionsMarshal.AsSpan(Fl));
                int o = j * d;
                for (int c = 0; c < d; c++) { yhs[o + c] = hiC[c]; yls[o + c] = loC[c]; }
            }
            return true;
        }

        /// <summary>Swaps two keys; their frame coordinates too when the node has a frame (a node in the identity frame never
        /// reads them, and a descendant that takes a frame computes them afresh for its keys).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Swap(int i, int j, bool framed)
        {
            if (i == j) return;
            int d = t._d;
            (perm[i], perm[j]) = (perm[j], perm[i]);
            for (int c = 0; c < d; c++) (kw[i * d + c], kw[j * d + c]) = (kw[j * d + c], kw[i * d + c]);
            if (!framed) return;
            var yh = _yh!; var yl = _yl!;
            for (int c = 0; c < d; c++)
            {
                (yh[i * d + c], yh[j * d + c]) = (yh[j * d + c], yh[i * d + c]);
                (yl[i * d + c], yl[j * d + c]) = (yl[j * d + c], yl[i * d + c]);
            }
        }

        /// <summary>Quickselect on the frame coordinate <paramref name="axis"/>: rank nth at nth, smaller before, larger after.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Select(int lo, int hi, int nth, int frame, int axis)
        {
            // The coordinate's array once (the frame does not change during the selection; Swap moves both arrays).
            var x = frame == 0 ? kw : _yh!;
            int d = t._d;
            bool framed = frame != 0;
            while (hi > lo)
            {
                double pivot = x[(lo + (hi - lo) / 2) * d + axis];
                int i = lo, j = hi;
                while (i <= j)
                {
                    while (x[i * d + axis] < pivot) i++;
                    while (x[j * d + axis] > pivot) j--;
                    if (i <= j) { Swap(i, j, framed); i++; j--; }
                }
                if (nth <= j) hi = j;
                else if (nth >= i) lo = i;
                else return;
            }
        }
    }

    /// <summary>Per-coordinate minimum and maximum of <paramref name="rows"/> (rows of d values; finite), vectorised over the
    /// flat array at SimdInfo's width (<paramref name="float32Lanes"/> forces one; 0 = the widest): w rows are d vectors
    /// whose lane ℓ of vector v holds coordinate (w·v + ℓ) mod d, whatever d is.</summary>
    internal static void CoordinateBox(ReadOnlySpan<double> rows, int d, Span<double> mn, Span<double> mx, int float32Lanes = 0)
    {
        // d vectors of minima and maxima live in registers: beyond d = 16 they would spill, and scalar is as fast.
        switch (d <= 16 ? SimdInfo.Resolve(float32Lanes) : 1)
        {
            case 16: CoordinateBox<Vector512<double>, Simd512D>(rows, d, mn, mx); break;
            case 8: CoordinateBox<Vector256<double>, Simd256D>(rows, d, mn, mx); break;
            case 4: CoordinateBox<Vector128<double>, Simd128D>(rows, d, mn, mx); break;
            default: CoordinateBox<double, ScalarSimd<double>>(rows, d, mn, mx); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void CoordinateBox<TV, TS>(ReadOnlySpan<double> rows, int d, Span<double> mn, Span<double> mx)
        where TV : unmanaged where TS : struct, ISimd<double, TV>
    {
        int w = TS.Count, group = w * d, n = rows.Length / d, full = rows.Length / group * group;
        mn[..d].Fill(double.PositiveInfinity); mx[..d].Fill(double.NegativeInfinity);
        ref double r0 = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(rows);
        if (full > 0)
        {
            Span<TV> vmn = stackalloc TV[d], vmx = stackalloc TV[d];
            vmn.Fill(TS.Broadcast(double.PositiveInfinity)); vmx.Fill(TS.Broadcast(double.NegativeInfinity));
            if (d == 2)
            {
                // The common case in registers: two vectors' worth of rows per step.
                TV a0 = vmn[0], a1 = vmn[1], b0 = vmx[0], b1 = vmx[1];
                for (int i = 0; i < full; i += group)
                {
                    TV x0 = TS.Load(ref Unsafe.Add(ref r0, i)), x1 = TS.Load(ref Unsafe.Add(ref r0, i + w));
                    a0 = TS.Min(a0, x0); b0 = TS.Max(b0, x0); a1 = TS.Min(a1, x1); b1 = TS.Max(b1, x1);
                }
                vmn[0] = a0; vmn[1] = a1; vmx[0] = b0; vmx[1] = b1;
            }
            else
                for (int i = 0; i < full; i += group)
                    for (int v = 0; v < d; v++)
                    {
                        TV x = TS.Load(ref Unsafe.Add(ref r0, i + v * w));
                        vmn[v] = TS.Min(vmn[v], x); vmx[v] = TS.Max(vmx[v], x);
                    }
            Span<double> lane = stackalloc double[w];
            for (int v = 0; v < d; v++)
            {
                TS.Store(vmn[v], ref lane[0]);
                for (int l = 0; l < w; l++) { int c = (v * w + l) % d; mn[c] = Math.Min(mn[c], lane[l]); }
                TS.Store(vmx[v], ref lane[0]);
                for (int l = 0; l < w; l++) { int c = (v * w + l) % d; mx[c] = Math.Max(mx[c], lane[l]); }
            }
        }
        for (int j = full / d; j < n; j++)
            for (int c = 0; c < d; c++) { double x = rows[j * d + c]; mn[c] = Math.Min(mn[c], x); mx[c] = Math.Max(mx[c], x); }
    }

    /// <summary>Cyclic Jacobi eigenvectors of a symmetric d×d matrix (diagonalised in place); columns of <paramref name="v"/>.</summary>
    private static void Jacobi(Span<double> a, Span<double> v, int d)
    {
        v.Clear();
        for (int i = 0; i < d; i++) v[i * d + i] = 1;
        for (int sweep = 0; sweep < 60; sweep++)
        {
            double off = 0, diag = 0;
            for (int p = 0; p < d; p++) { diag += a[p * d + p] * a[p * d + p]; for (int q = p + 1; q < d; q++) off += a[p * d + q] * a[p * d + q]; }
            if (off == 0 || off <= 1e-34 * diag) return;
            for (int p = 0; p < d; p++)
                for (int q = p + 1; q < d; q++)
                {
                    double apq = a[p * d + q];
                    if (apq == 0) continue;
                    double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                    double tt = (theta >= 0 ? 1 : -1) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(tt * tt + 1), s = tt * c;
                    for (int r = 0; r < d; r++) { double arp = a[r * d + p], arq = a[r * d + q]; a[r * d + p] = c * arp - s * arq; a[r * d + q] = s * arp + c * arq; }
                    for (int r = 0; r < d; r++) { double apr = a[p * d + r], aqr = a[q * d + r]; a[p * d + r] = c * apr - s * aqr; a[q * d + r] = s * apr + c * aqr; }
                    for (int r = 0; r < d; r++) { double vrp = v[r * d + p], vrq = v[r * d + q]; v[r * d + p] = c * vrp - s * vrq; v[r * d + q] = s * vrp + c * vrq; }
                }
        }
    }

    /// <summary>y = L⁻¹Pᵀ(k − o) of frame f in double-double (k − o by TwoSum, forward substitution with TwoProduct):
    /// error ≤ 2u|y| + O(d²)u²·Σ|terms|, so (yhi − c) + ylo is accurate relative to |y − c| for any centre c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FrameCoordinates(int d, int f, ReadOnlySpan<double> key, Span<double> hi, Span<double> lo,
        ReadOnlySpan<double> fo, ReadOnlySpan<int> fp, ReadOnlySpan<double> fl)
    {
        for (int i = 0; i < d; i++)
        {
            int p = fp[f * d + i];
            Dd.TwoSum(key[p], -fo[f * d + p], out double sh, out double sl);
            for (int c = 0; c < i; c++)
            {
                double lic = fl[f * d * d + i * d + c];
                if (lic == 0) continue;
                Dd.TwoProduct(lic, hi[c], out double ph, out double pl);
                pl = Math.FusedMultiplyAdd(lic, lo[c], pl);
                Dd.Add(sh, sl, -ph, -pl, out sh, out sl);
            }
            hi[i] = sh; lo[i] = sl;
        }
    }

    private void FrameCoordinates(int f, ReadOnlySpan<double> key, Span<double> hi, Span<double> lo) =>
        FrameCoordinates(_d, f, key, hi, lo, _fo, _fp, _fl);

    // ---- moments ---------------------------------------------------------------------------------------------

    /// <summary>Moments for <paramref name="exp"/> at every node with at least <paramref name="momentMinimum"/> keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ComputeMoments(CentredExpansion exp, int momentMinimum, int threads)
    {
        if (exp.D != _d) throw new ArgumentException("dimension mismatch", nameof(exp));
        ReleaseMoments();
        _exp = exp; MomentMinimum = momentMinimum;
        int nodes = NodeCount, terms = exp.Terms, slots = 0;
        _stride = (_dv + 1) * terms;
        _momentOffset = new int[nodes];
        for (int node = 0; node < nodes; node++) _momentOffset[node] = Hi(node) - Lo(node) >= momentMinimum ? slots++ : -1;
        MomentNodes = slots;
        // Rented, not allocated: at d = 2, n = 2¹⁸, B = 30 the moments are 66 MB, and a fresh array of that size faults
        // every page in (the moment build spread over 0.05–0.19 s between runs of one process; rented, and returned by
        // the plan's Dispose, 0.03–0.05 s). Cleared: translation adds into a parent's slot, and the padding a node's evaluation may read past the
        // last one must be zeros, not an earlier user's values.
        _momentLength = checked(slots * _stride + CentredExpansion.Padding);
        _moments = ArrayPool<double>.Shared.Rent(_momentLength);
        _moments.AsSpan(0, _momentLength).Clear();
        var units = new double[nodes];
        var byDepth = new List<int>[Depth + 1];
        for (int i = 0; i <= Depth; i++) byDepth[i] = [];
        for (int node = 0; node < nodes; node++) if (_momentOffset[node] >= 0) byDepth[_depth[node]].Add(node);
        var opts = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
        for (int level = Depth; level >= 0; level--)
        {
            var ids = byDepth[level];
            Parallel.For(0, ids.Count, opts, () => new MomentScratch(exp, _d, _dv), (idx, _, sc) => { NodeMoments(ids[idx], sc, units); return sc; }, _ => { });
        }
        double worst = 0;
        for (int node = 0; node < nodes; node++) if (_momentOffset[node] >= 0) worst = Math.Max(worst, units[node]);
        MomentUnits = worst + exp.FoldUnits;
        Parallel.For(0, slots, opts, s =>
        {
            for (int col = 0; col <= _dv; col++) exp.FoldCoefficients(_moments.AsSpan(s * _stride + col * terms, terms));
        });
    }

    /// <summary>Returns the moments to the pool (the tree answers no query with moments until the next
    /// <see cref="ComputeMoments"/>); the caller guarantees that no traversal is reading them.</summary>
    public void ReleaseMoments()
    {
        if (_moments.Length > 0) ArrayPool<double>.Shared.Return(_moments);
        _moments = []; _momentLength = 0; MomentNodes = 0;
    }

    /// <summary>One node's moments: its children's translated when both have them in the node's frame, else its keys'.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void NodeMoments(int node, MomentScratch sc, double[] units)
    {
        var exp = _exp!;
        int l = Left(node), r = Right(node);
        if (l >= 0 && _momentOffset[l] >= 0 && _momentOffset[r] >= 0 && _frame[l] == _frame[node] && _frame[r] == _frame[node]
            && Translate(node, l, sc) && Translate(node, r, sc))
            units[node] = Math.Max(units[l], units[r]) + exp.TranslationUnits + 1;
        else
        {
            _moments.AsSpan(_momentOffset[node] * _stride, _stride).Clear();
            AccumulateKeys(node, sc);
            int cnt = Hi(node) - Lo(node);
            units[node] = exp.Degree + 3 + Chunk + (double)cnt / Chunk;
        }
    }

    private sealed class MomentScratch(CentredExpansion exp, int d, int dv)
    {
        public readonly double[] Part = new double[(dv + 1) * exp.Terms + CentredExpansion.Padding], U = new double[exp.KeyBlock * d], // + Padding: the masked tail vector
            Hi = new double[d], Lo = new double[d], Work = new double[Math.Max(exp.TranslateWork(dv + 1), exp.AccumulateWork(dv))], Ds = new double[2 * d];
    }

    /// <summary>Adds the child's moments, moved to the parent's centre and scale, to the parent's. False (nothing added)
    /// when rounding put the child box outside the parent's (|δ| + σ &gt; 1): the parent then sums its keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool Translate(int parent, int child, MomentScratch sc)
    {
        int d = _d, terms = _exp!.Terms;
        var delta = sc.Ds.AsSpan(0, d); var sigma = sc.Ds.AsSpan(d, d);
        for (int c = 0; c < d; c++)
        {
            double wp = _fbox[2 * d * parent + d + c];
            delta[c] = wp > 0 ? (_fbox[2 * d * child + c] - _fbox[2 * d * parent + c]) / wp : 0;
            sigma[c] = wp > 0 ? _fbox[2 * d * child + d + c] / wp : 0;
            if (!(Math.Abs(delta[c]) + sigma[c] <= 1 + 16 * U)) return false;
        }
        var src = _moments.AsSpan(_momentOffset[child] * _stride, _stride);
        var dst = _moments.AsSpan(_momentOffset[parent] * _stride, _stride);
        _exp.TranslateAdd(src, delta, sigma, dst, _dv + 1, sc.Work);
        return true;
    }

    /// <summary>Moments of one node from its keys, summed in chunks (rounding (chunk + count/chunk)·u relative to Σ|terms|).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AccumulateKeys(int node, MomentScratch sc)
    {
        int dv = _dv, d = _d, f = _frame[node];
        var mom = _moments.AsSpan(_momentOffset[node] * _stride, _stride);
        var part = sc.Part; var u = sc.U;
        var ctr = _fbox.AsSpan(2 * d * node, d); var ext = _fbox.AsSpan(2 * d * node + d, d);
        int block = _exp!.KeyBlock;
        for (int start = Lo(node); start < Hi(node); start += Chunk)
        {
            Array.Clear(part);
            int end = Math.Min(Hi(node), start + Chunk);
            for (int b = start; b < end; b += block)
            {
                int count = Math.Min(block, end - b);
                for (int j = b; j < b + count; j++)
                {
                    var uj = u.AsSpan((j - b) * d, d);
                    if (f == 0)
                        for (int c = 0; c < d; c++) uj[c] = ext[c] > 0 ? Math.Clamp((_k[j * d + c] - ctr[c]) / ext[c], -1, 1) : 0;
                    else
                    {
                        FrameCoordinates(f, _k.AsSpan(j * d, d), sc.Hi, sc.Lo);
                        for (int c = 0; c < d; c++) uj[c] = ext[c] > 0 ? Math.Clamp(((sc.Hi[c] - ctr[c]) + sc.Lo[c]) / ext[c], -1, 1) : 0;
                    }
                }
                _exp.AccumulateKeys(u, _v.AsSpan(b * dv, count * dv), count, dv, part, sc.Work);
            }
            System.Numerics.Tensors.TensorPrimitives.Add(mom, part.AsSpan(0, mom.Length), mom);
        }
    }

    // ---- traversal -------------------------------------------------------------------------------------------

    /// <summary>Per-thread query state: the query, its maximum, frame coefficients (cached per frame), a stack and the
    /// work list of one traversal.</summary>
    internal sealed class Scratch
    {
        public Scratch(int d, int dv, int terms, int powersWork)
        {
            D = d; Q = new double[d]; A = new double[d]; Z = new double[d]; NodeSum = new double[dv + 1];
            Work = new double[Math.Max(1, powersWork)]; Acc = new double[dv + 1];
        }
        public readonly int D;
        public readonly double[] Q, A, Z, Work, Acc, NodeSum;
        public double Scale, YHi, YLo, MaxLogit;
        public int[] Stack = new int[512];
        public double[] Bounds = new double[512];
        public int[] Expanded = new int[256];
        public double[] ExpandedH = new double[256];
        public int ExpandedCount;
        /// <summary>With <see cref="TrackDiscard"/>: Σ over pruned nodes of count·e^{u − M + DiscardShift} (u the node's
        /// logit upper bound, the shift covering its rounding; e^x by its power-of-two bound, at most 2× above, since an
        /// exp per pruned node cost ≈ 9 % of a d = 2, B = 100 run), a bound on the mass of the keys the traversals dropped,
        /// relative to the maximum's weight. Collect adds to it; the caller resets it per query.</summary>
        public double Discard;
        public bool TrackDiscard;
        public double DiscardShift;
        /// <summary>With <see cref="EstimateKept"/> (the planner only: two exponentials per node): an estimate — not a
        /// bound — of the kept mass (expanded nodes and leaves, see <see cref="AddKept"/>), for the choice of the band.</summary>
        public double KeptEstimate;
        public bool EstimateKept;
        /// <summary>The previous query's maximising key (its tree, or −1 for a direct tail key, and its position), or
        /// HintKey = −1: a starting point for the next query's branch and bound (queries run in direction order).</summary>
        public int HintTree = -1, HintKey = -1;
        public int[] Direct = new int[512];
        public int DirectCount;
        public double[] WBuf = new double[Chunk];
        // frame cache
        public int Stamp;
        public int[] FrameStamp = [];
        public double[] QbHi = [], QbLo = [], QoHi = [], QoLo = [], Abar = [], QoScaled = [];

        /// <summary>Sets the query (a = s·q).</summary>
        public void SetQuery(ReadOnlySpan<double> q, double scale)
        {
            q.CopyTo(Q); Scale = scale;
            for (int c = 0; c < D; c++) A[c] = scale * q[c];
        }

        /// <summary>Sets the maximum logit as the double-double q·k* (M = s·(yHi + yLo)).</summary>
        public void SetMaximum(double yHi, double yLo) { YHi = yHi; YLo = yLo; MaxLogit = Scale * yHi; }

        public void Reserve(int frames)
        {
            if (FrameStamp.Length >= frames) return;
            int n = Math.Max(Math.Max(frames, 4), 2 * FrameStamp.Length);
            FrameStamp = new int[n]; QbHi = new double[n * D]; QbLo = new double[n * D]; Abar = new double[n * D];
            QoHi = new double[n]; QoLo = new double[n]; QoScaled = new double[n];
        }

        public void AddExpanded(int node, double h)
        {
            if (ExpandedCount == Expanded.Length) { Array.Resize(ref Expanded, 2 * Expanded.Length); Array.Resize(ref ExpandedH, 2 * ExpandedH.Length); }
            Expanded[ExpandedCount] = node; ExpandedH[ExpandedCount++] = h;
        }

        /// <summary>Adds a key range to the work list; false when it extended the previous one (adjacent in tree order).</summary>
        public bool AddDirect(int lo, int hi)
        {
            if (DirectCount > 0 && Direct[DirectCount - 1] == lo) { Direct[DirectCount - 1] = hi; return false; }
            if (DirectCount + 2 > Direct.Length) Array.Resize(ref Direct, 2 * Direct.Length);
            Direct[DirectCount++] = lo; Direct[DirectCount++] = hi;
            return true;
        }
    }

    public Scratch CreateScratch(int dvOverride = -1) => new(_d, dvOverride >= 0 ? dvOverride : _dv, _exp?.Terms ?? 1, _exp?.PowersWork ?? 1);

    /// <summary>Begins a traversal of this tree for the scratch's query (invalidates cached frame coefficients).</summary>
    private void Begin(Scratch sc)
    {
        sc.Reserve(FrameCount);
        if (++sc.Stamp == int.MaxValue) { sc.Stamp = 1; Array.Clear(sc.FrameStamp); }
    }

    /// <summary>Frame coefficients q̄ = LᵀPᵀq (double-double), ā = s·q̄ and q·o (double-double) for frame f.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FrameQuery(Scratch sc, int f)
    {
        int d = _d;
        sc.FrameStamp[f] = sc.Stamp;
        var qbh = sc.QbHi.AsSpan(f * d, d); var qbl = sc.QbLo.AsSpan(f * d, d);
        for (int l = d - 1; l >= 0; l--)
        {
            double sh = sc.Q[_fp[f * d + l]], sl = 0;
            for (int i = l + 1; i < d; i++)
            {
                double lil = _fl[f * d * d + i * d + l];
                if (lil == 0) continue;
                double qi = sc.Q[_fp[f * d + i]];
                Dd.TwoProduct(lil, qi, out double ph, out double pl);
                Dd.Add(sh, sl, ph, pl, out sh, out sl);
            }
            qbh[l] = sh; qbl[l] = sl;
            sc.Abar[f * d + l] = sc.Scale * sh;
        }
        var (oh, ol) = RangeErrorBudget.Dot2(sc.Q, _fo.AsSpan(f * d, d));
        sc.QoHi[f] = oh; sc.QoLo[f] = ol; sc.QoScaled[f] = sc.Scale * oh;
    }

    /// <summary>Upper bound on s·q·k over the node's keys (absolute logit, float64, error ≤ the run's slack): the
    /// smaller of the axis-aligned and the frame bound. Also returns the frame logit half-width h = Σ|ā_c|w_c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private double Upper(Scratch sc, int node, out double h)
    {
        int d = _d;
        var a = sc.A;
        double ca = 0, ha = 0;
        int o = 2 * d * node;
        for (int c = 0; c < d; c++) { ca += a[c] * _box[o + c]; ha += Math.Abs(a[c]) * _box[o + d + c]; }
        int f = _frame[node];
        if (f == 0) { h = ha; return ca + ha; }
        if (sc.FrameStamp[f] != sc.Stamp) FrameQuery(sc, f);
        double co = sc.QoScaled[f], ho = 0;
        for (int c = 0; c < d; c++) { double ab = sc.Abar[f * d + c]; co += ab * _fbox[o + c]; ho += Math.Abs(ab) * _fbox[o + d + c]; }
        h = ho;
        return Math.Min(ca + ha, co + ho);
    }

    /// <summary>
    /// Maximum search with a bound (Lemma A.4's s_max: the paper needs the maximum only up to a grid step): branch and
    /// bound, more promising child first, skipping nodes whose upper bound cannot beat the best key so far by more than
    /// <paramref name="tolerance"/> (so ties and near-ties never open the tree). On return <paramref name="best"/> is
    /// the best logit found (s·q·k, float64) and <paramref name="bestKey"/> its tree position (unchanged if this tree
    /// cannot beat the incoming best); the true maximum over this tree is at most max(best, incoming) + tolerance + slack.
    /// <para>With a <paramref name="budget"/> of node visits (the branch and bound has no bound of its own: how many nodes
    /// it opens depends on how fast the best key improves), an exhausted search hands the rest to
    /// <see cref="ThresholdSearch"/> — Lemma A.4's binary search over thresholds, starting from the best key found and
    /// the largest bound still open — whose every step is one emptiness query of the range structure.</para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void MaxSearch(Scratch sc, double tolerance, ref double best, ref int bestKey, QueryStats st, int budget = int.MaxValue)
    {
        var a = sc.A;
        Begin(sc);
        int d = _d, sp = 0;
        double u0 = Upper(sc, 0, out _);
        st.MaxSearchNodes++;
        if (u0 <= best + tolerance) return;
        if ((d == 1 || d == 2 && _m >= KeyHull.MinimumKeys) && _hull.Value is { } hull)
        {
            // max_j a·k_j ≤ max over the hull's vertices + ‖a‖₂·Reach (KeyHull; d = 1: the extremes, Reach 0): within a
            // quarter of the tolerance, the vertex scan is the answer (its rounding, like the keys' below, is inside the
            // caller's slack).
            double reach = hull.Reach == 0 ? 0 : Math.Sqrt(a[0] * a[0] + a[1] * a[1]) * (1 + 4 * U) * hull.Reach;
            if (reach <= 0.25 * tolerance)
            {
                double x = hull.Max(a, out int vertex);
                if (x > best) { best = x; bestKey = hull.Positions[vertex]; }
                return;
            }
        }
        sc.Stack[sp] = 0; sc.Bounds[sp++] = u0;
        int visits = 0;
        while (sp > 0)
        {
            if (++visits > budget)
            {
                // Every key not yet seen is under an open node: the largest open bound caps the maximum.
                double open = double.NegativeInfinity;
                for (int i = 0; i < sp; i++) open = Math.Max(open, sc.Bounds[i]);
                st.ThresholdSearches++;
                Thresholds(sc, tolerance, open, ref best, ref bestKey, st);
                return;
            }
            --sp;
            int node = sc.Stack[sp];
            if (sc.Bounds[sp] <= best + tolerance) continue;
            st.MaxSearchNodes++;
            if (sc.Bounds[sp] - Lower(sc, node) <= tolerance)
            {
                // Every key of the node is within the tolerance of its maximum: one of them will do (ties, flat nodes).
                int j = Lo(node);
                double x = KeyLogit(sc, j);
                if (x > best) { best = x; bestKey = j; }
                continue;
            }
            if (Left(node) < 0)
            {
                for (int j = Lo(node); j < Hi(node); j++)
                {
                    double x = KeyLogit(sc, j);
                    if (x > best) { best = x; bestKey = j; }
                }
                continue;
            }
            int l = Left(node), r = Right(node);
            double ul = Upper(sc, l, out _), ur = Upper(sc, r, out _);
            if (sp + 2 > sc.Stack.Length) { Array.Resize(ref sc.Stack, 2 * sc.Stack.Length); Array.Resize(ref sc.Bounds, sc.Stack.Length); }
            // The more promising child is popped first; bounds are re-checked when popped, as the best improves.
            if (ul >= ur)
            {
                if (ur > best + tolerance) { sc.Stack[sp] = r; sc.Bounds[sp++] = ur; }
                if (ul > best + tolerance) { sc.Stack[sp] = l; sc.Bounds[sp++] = ul; }
            }
            else
            {
                if (ul > best + tolerance) { sc.Stack[sp] = l; sc.Bounds[sp++] = ul; }
                if (ur > best + tolerance) { sc.Stack[sp] = r; sc.Bounds[sp++] = ur; }
            }
        }
    }

    /// <summary>The branch and bound's node budget before <see cref="ThresholdSearch"/> takes over: a quarter of the tree.
    /// Measured cold (m = 2¹⁶, d = 3, 4), the branch and bound visits 0.6-0.7× the nodes of one range-counting query at
    /// the maximum plus the tolerance on uniform, sphere and strip keys (2.5× on 16 tight clusters, where that query
    /// stops at the clusters' boxes) and 2-4× fewer than the binary search on all of them; the budget only caps an
    /// unlucky order.</summary>
    public int MaxSearchBudget => Math.Max(64, NodeCount / 4);

    /// <summary>
    /// The row maximum by binary search over thresholds (Gupta et al. Lemma A.4): with a key of logit ≥ lo in hand and no
    /// key above hi, ask whether some key has logit ≥ t = (lo + hi)/2 — a halfspace emptiness query
    /// (<see cref="FirstAtLeast"/>) — and keep the half that holds the maximum, until hi − lo ≤ <paramref name="tolerance"/>:
    /// ⌈log₂((hi − lo)/tolerance)⌉ queries, each costing the nodes its hyperplane crosses. On return
    /// <paramref name="best"/> is a key's logit (s·q·k, float64) and the true maximum over this tree is at most
    /// max(best + tolerance, incoming best) + slack, as for <see cref="MaxSearch"/>. <paramref name="hi"/>: a bound on every
    /// key's logit (+∞: the root's).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ThresholdSearch(Scratch sc, double tolerance, double hi, ref double best, ref int bestKey, QueryStats st)
    {
        Begin(sc);
        Thresholds(sc, tolerance, hi, ref best, ref bestKey, st);
    }

    private void Thresholds(Scratch sc, double tolerance, double hi, ref double best, ref int bestKey, QueryStats st)
    {
        hi = Math.Min(hi, Upper(sc, 0, out _));
        st.MaxSearchNodes++;
        if (double.IsNegativeInfinity(best)) { best = KeyLogit(sc, 0); bestKey = 0; } // a lower end that is a real logit
        while (hi - best > tolerance)
        {
            double t = best + 0.5 * (hi - best);
            if (Witness(sc, t, 0, st, out int j, out double x)) { best = x; bestKey = j; }
            else hi = t;
        }
    }

    /// <summary>
    /// Halfspace emptiness with a witness (one step of Lemma A.4): a key whose float64 logit s·q·k is at least
    /// <paramref name="threshold"/>, searched more promising child first and stopped at the first one found. A node is
    /// skipped when its upper bound falls short of the threshold by more than <paramref name="slack"/> (the bounds'
    /// rounding): with the run's slack, false means no key's float64 logit reaches the threshold; with 0 (the binary
    /// search) it means no key's true logit exceeds it by more than the slack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool FirstAtLeast(Scratch sc, double threshold, double slack, QueryStats st, out int key, out double logit)
    {
        Begin(sc);
        return Witness(sc, threshold, slack, st, out key, out logit);
    }

    private bool Witness(Scratch sc, double threshold, double slack, QueryStats st, out int key, out double logit)
    {
        int sp = 0;
        double cut = threshold - slack;
        sc.Stack[sp++] = 0;
        while (sp > 0)
        {
            int node = sc.Stack[--sp];
            st.MaxSearchNodes++;
            if (Left(node) < 0)
            {
                for (int j = Lo(node); j < Hi(node); j++)
                {
                    double x = KeyLogit(sc, j);
                    if (x >= threshold) { key = j; logit = x; return true; }
                }
                continue;
            }
            int l = Left(node), r = Right(node);
            double ul = Upper(sc, l, out _), ur = Upper(sc, r, out _);
            if (sp + 2 > sc.Stack.Length) { Array.Resize(ref sc.Stack, 2 * sc.Stack.Length); Array.Resize(ref sc.Bounds, sc.Stack.Length); }
            // The more promising child on top; a child whose bound is below the threshold holds no witness.
            if (ul >= ur)
            {
                if (ur >= cut) sc.Stack[sp++] = r;
                if (ul >= cut) sc.Stack[sp++] = l;
            }
            else
            {
                if (ul >= cut) sc.Stack[sp++] = l;
                if (ur >= cut) sc.Stack[sp++] = r;
            }
        }
        key = -1; logit = double.NegativeInfinity;
        return false;
    }

    /// <summary>The float64 logit s·q·k_j of tree key j (the one dot product every search compares).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private double KeyLogit(Scratch sc, int j)
    {
        double x = 0;
        for (int c = 0; c < _d; c++) x += sc.A[c] * _k[j * _d + c];
        return x;
    }

    /// <summary>
    /// Halfspace range counting (the counting query of Lemma A.4 / Theorem 3.1): the number of keys with
    /// Σ_c a_c·k_c ≥ <paramref name="threshold"/> (a = s·q, the same float64 dot product for every key). A node whose
    /// lower bound clears the threshold by more than <paramref name="slack"/> (the bounds' rounding) counts whole, one whose
    /// upper bound falls short by more than the slack counts nothing, others are opened.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long CountAtLeast(Scratch sc, double threshold, double slack, QueryStats st)
    {
        Begin(sc);
        int sp = 0;
        long count = 0;
        sc.Stack[sp++] = 0;
        while (sp > 0)
        {
            int node = sc.Stack[--sp];
            st.NodesVisited++;
            double up = Upper(sc, node, out _), low = Lower(sc, node);
            if (up + slack < threshold) continue;
            if (low - slack >= threshold) { count += Hi(node) - Lo(node); continue; }
            if (Left(node) < 0)
            {
                for (int j = Lo(node); j < Hi(node); j++)
                    if (KeyLogit(sc, j) >= threshold) count++;
                continue;
            }
            if (sp + 2 > sc.Stack.Length) Array.Resize(ref sc.Stack, 2 * sc.Stack.Length);
            sc.Stack[sp++] = Right(node);
            sc.Stack[sp++] = Left(node);
        }
        return count;
    }

    /// <summary>Lower bound on s·q·k over the node's keys (the larger of the axis-aligned and the frame bound).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private double Lower(Scratch sc, int node)
    {
        int d = _d, o = 2 * d * node, f = _frame[node];
        var a = sc.A;
        double ca = 0, ha = 0;
        for (int c = 0; c < d; c++) { ca += a[c] * _box[o + c]; ha += Math.Abs(a[c]) * _box[o + d + c]; }
        if (f == 0) return ca - ha;
        if (sc.FrameStamp[f] != sc.Stamp) FrameQuery(sc, f);
        double co = sc.QoScaled[f], ho = 0;
        for (int c = 0; c < d; c++) { double ab = sc.Abar[f * d + c]; co += ab * _fbox[o + c]; ho += Math.Abs(ab) * _fbox[o + d + c]; }
        return Math.Max(ca - ha, co - ho);
    }

    /// <summary>
    /// The relevant-key traversal of one query (Algorithm 1 step 5): from the root, a node whose upper bound is below
    /// <paramref name="threshold"/> (absolute logit, M − T − slack) holds only irrelevant keys and is pruned; a node with
    /// moments (≥ <paramref name="momentMinimum"/> keys) whose frame logit half-width h = Σ|ā_c|w_c is at most
    /// <paramref name="hMax"/> is answered from its moments (keys below the threshold inside it only add accuracy); other
    /// nodes are opened, and leaves are summed directly. Fills the scratch's work list (expanded nodes with their h,
    /// direct key ranges) and counts the work; nothing is evaluated, so this is also the planner's work estimate.
    /// With sc.TrackDiscard the pruned nodes' mass bound is added to sc.Discard.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Collect(Scratch sc, double threshold, double hMax, int momentMinimum, QueryStats st)
    {
        Begin(sc);
        int sp = 0;
        var stack = sc.Stack;
        stack[sp++] = 0;
        while (sp > 0)
        {
            int node = stack[--sp];
            st.NodesVisited++;
            double u = Upper(sc, node, out double h);
            if (u < threshold)
            {
                st.Pruned++;
                if (sc.TrackDiscard) AddDiscard(sc, Hi(node) - Lo(node), u);
                continue;
            }
            int cnt = Hi(node) - Lo(node);
            if (cnt >= momentMinimum && h <= hMax)
            {
                sc.AddExpanded(node, h);
                st.Expansions++;
                if (sc.EstimateKept) AddKept(sc, cnt, u, h);
                continue;
            }
            if (Left(node) < 0)
            {
                if (sc.EstimateKept) AddKept(sc, cnt, u, h);
                if (sc.AddDirect(Lo(node), Hi(node))) st.DirectRanges++;
                st.DirectKeys += cnt;
                continue;
            }
            if (sp + 2 > stack.Length) { Array.Resize(ref sc.Stack, 2 * stack.Length); stack = sc.Stack; }
            stack[sp++] = Right(node);
            stack[sp++] = Left(node);
        }
    }

    /// <summary>Adds a pruned node's mass bound to sc.Discard (see <see cref="Scratch.Discard"/>). Out of line: inlined, the
    /// bookkeeping slowed the traversal loop it sits in (d = 2, B = 100: the query phase 0.13 → 0.19 s).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void AddDiscard(Scratch sc, int count, double u) =>
        sc.Discard += count * Numerics.FloatingPoint.ExpUpperBound(u - sc.MaxLogit + sc.DiscardShift);

    /// <summary>Adds the mass estimate of <see cref="Scratch.KeptEstimate"/>: count keys with logits spread evenly over
    /// [u − 2h, u], count·(e^{u−M} − e^{u−2h−M})/(2h).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AddKept(Scratch sc, int count, double u, double h)
    {
        double top = u - sc.MaxLogit;
        sc.KeptEstimate += h > 1e-3 ? count * (Math.Exp(top) - Math.Exp(top - 2 * h)) / (2 * h) : count * Math.Exp(top - h);
    }

    /// <summary>
    /// Evaluates the scratch's work list into sc.Acc (Σ e^{s·q·k − M}·(1, v) over the collected keys, M = s·(yHi + yLo)),
    /// and returns the certificate quantities of this query: <paramref name="approx"/> = Σ over expanded nodes of
    /// e^{s·q·κ − M}·count·(δ + units·u·Magnitude(h)) — the absolute bound on their polynomial and rounding error in units
    /// of ‖V‖∞ — and <paramref name="magnitude"/> = Σ e^{s·q·κ − M}·count·Magnitude(h) (bounds the terms' sizes).
    /// Direct keys use compensated logits unless <paramref name="plainLogits"/> (then vectorised; the caller charges
    /// the plain dot products' rounding to the logit budget).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Accumulate(Scratch sc, bool plainLogits, double evaluationUnits, ref double approx, ref double magnitude)
    {
        int d = _d, dv = _dv;
        var acc = sc.Acc;
        var exp = _exp;
        for (int e = 0; e < sc.ExpandedCount; e++)
        {
            int node = sc.Expanded[e], f = _frame[node], o = 2 * d * node;
            double h = sc.ExpandedH[e], diff;
            var z = sc.Z;
            if (f == 0)
            {
                diff = RangeErrorBudget.DotMinus(sc.Q, _box.AsSpan(o, d), sc.YHi, sc.YLo);
                for (int c = 0; c < d; c++) z[c] = sc.A[c] * _box[o + d + c] / exp!.H;
            }
            else
            {
                // q·κ − y* = (q·o − y*) + q̄·c in double-double.
                Dd.Add(sc.QoHi[f], sc.QoLo[f], -sc.YHi, -sc.YLo, out double sh, out double sl);
                for (int c = 0; c < d; c++)
                {
                    Dd.TwoProduct(sc.QbHi[f * d + c], _fbox[o + c], out double ph, out double pl);
                    pl = Math.FusedMultiplyAdd(sc.QbLo[f * d + c], _fbox[o + c], pl);
                    Dd.Add(sh, sl, ph, pl, out sh, out sl);
                }
                diff = sh + sl;
                for (int c = 0; c < d; c++) z[c] = sc.Abar[f * d + c] * _fbox[o + d + c] / exp!.H;
            }
            double fa = Math.Exp(sc.Scale * diff);
            var mom = _moments.AsSpan(_momentOffset[node] * _stride, _stride + CentredExpansion.Padding); // the next node's first moments, or the padding
            var node1 = sc.NodeSum.AsSpan(0, dv + 1);
            exp!.Evaluate(z, mom, dv + 1, node1, sc.Work);
            for (int col = 0; col <= dv; col++) acc[col] += fa * node1[col];
            double mag = exp.MagnitudeAtMost(h), w = fa * (Hi(node) - Lo(node));
            approx += w * (exp.AbsoluteError + evaluationUnits * U * mag);
            magnitude += w * mag;
        }
        if (sc.DirectCount == 0) return;
        if (plainLogits)
        {
            DirectRanges(sc, SimdInfo.Float32Lanes);
            return;
        }
        for (int r = 0; r < sc.DirectCount; r += 2) DirectSums.Compensated(this, sc, sc.Direct[r], sc.Direct[r + 1]);
    }

    /// <summary>Adds the scratch's direct ranges (plain logits) into sc.Acc at a vector width of
    /// <paramref name="float32Lanes"/> (16, 8, 4 or 1; SimdInfo's ladder — it must be supported here; tests run each).
    /// 1 ≤ dv ≤ 4: every range in one pass, the sums in registers across ranges (a leaf range is 8–16 keys: a call and a
    /// reduction per range cost as much as its keys); wider V: per range, the weights then one dot product per column.
    /// On AVX-512 (Zen 4) the 8-double form took n = 2¹⁸, d = 2, B = 30 from 0.364 to 0.344 s (in-process A/B, medians of 11).</summary>
    internal void DirectRanges(Scratch sc, int float32Lanes)
    {
        switch (SimdInfo.Resolve(float32Lanes))
        {
            case 16: Run<Vector512<double>, Simd512D>(this, sc); break;
            case 8: Run<Vector256<double>, Simd256D>(this, sc); break;
            case 4: Run<Vector128<double>, Simd128D>(this, sc); break;
            default: Run<double, ScalarSimd<double>>(this, sc); break;
        }

        static void Run<TV, TS>(MomentTree t, Scratch sc) where TV : unmanaged where TS : ISimd<double, TV>
        {
            if (t._dv is >= 1 and <= 4) { DirectSums.Ranges<TV, TS>(t, sc); return; }
            for (int r = 0; r < sc.DirectCount; r += 2) DirectSums.Plain<TV, TS>(t, sc, sc.Direct[r], sc.Direct[r + 1]);
        }
    }

    /// <summary>Direct sums of e^{s·q·k − M}·(1, v) over tree positions [lo, hi).</summary>
    private static class DirectSums
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Compensated(MomentTree t, Scratch sc, int lo, int hi)
        {
            int d = t._d, dv = t._dv;
            var acc = sc.Acc;
            for (int j = lo; j < hi; j++)
            {
                double w = Math.Exp(sc.Scale * RangeErrorBudget.DotMinus(sc.Q, t._k.AsSpan(j * d, d), sc.YHi, sc.YLo));
                acc[0] += w;
                for (int col = 0; col < dv; col++) acc[col + 1] += w * t._v[j * dv + col];
            }
        }

        /// <summary>Vectorised: logits by plain FMA dot products (SoA keys) and the exact kernel's 2ˣ (≤ 2 ulp) in one
        /// pass that also sums the weights; then one dot product per value column.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Plain<TV, TS>(MomentTree t, Scratch sc, int lo, int hi) where TV : unmanaged where TS : ISimd<double, TV>
        {
            int d = t._d, dv = t._dv, m = t._m;
            var acc = sc.Acc;
            double log2e = sc.Scale * 1.4426950408889634, yh = sc.YHi;
            for (int start = lo; start < hi; start += Chunk)
            {
                int len = Math.Min(Chunk, hi - start);
                var w = sc.WBuf.AsSpan(0, len);
                double z = Weights<TV, TS>(t._kT, m, d, start, len, sc.Q, yh, log2e, w);
                acc[0] += z;
                for (int col = 0; col < dv; col++) acc[col + 1] += System.Numerics.Tensors.TensorPrimitives.Dot<double>(w, t._vT.AsSpan(col * m + start, len));
            }
        }

        private const int MaxLanes = 8;
        // MaxLanes zeros then MaxLanes ones: read from MaxLanes − k, a vector's first k lanes are 0 and the rest 1.
        private static readonly double[] TailMask = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];

        /// <summary>acc[0] += Σ w_j, acc[1 + c] += Σ w_j·v_jc (dv ≤ 4) over all the scratch's direct ranges, w_j as in
        /// <see cref="Weights"/>: per-lane sums across the ranges, reduced once. A range's last partial vector is a whole
        /// one ending at the range's end, its lanes already summed multiplied by an exact 0 (ranges shorter than a vector
        /// are summed key by key).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Ranges<TV, TS>(MomentTree t, Scratch sc) where TV : unmanaged where TS : ISimd<double, TV>
        {
            double[] kT = t._kT, vT = t._vT, q = sc.Q, acc = sc.Acc;
            int m = t._m, d = t._d, dv = t._dv, lanes = TS.Count;
            double log2e = sc.Scale * 1.4426950408889634, yh = sc.YHi;
            ref double kr = ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(kT);
            ref double vr = ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(vT);
            var sum = TS.Zero; var s0 = sum; var s1 = sum; var s2 = sum; var s3 = sum;
            double z = 0, a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            var logit = new Logits<TV, TS>(q, d, yh, log2e);
            var direct = sc.Direct;
            for (int r = 0; r < sc.DirectCount; r += 2)
            {
                int lo = direct[r], hi = direct[r + 1], at = lo;
                for (; at + lanes <= hi; at += lanes)
                {
                    var e = TS.Exp2(logit.Scaled(ref kr, m, at));
                    sum = TS.Add(sum, e);
                    s0 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, at)), s0);
                    if (dv > 1) s1 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, m + at)), s1);
                    if (dv > 2) s2 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, 2 * m + at)), s2);
                    if (dv > 3) s3 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, 3 * m + at)), s3);
                }
                if (at == hi) continue;
                if (hi - lo >= lanes)
                {
                    int from = hi - lanes;
                    var e = TS.Mul(TS.Exp2(logit.Scaled(ref kr, m, from)), TS.Load(ref TailMask[MaxLanes - (at - from)]));
                    sum = TS.Add(sum, e);
                    s0 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, from)), s0);
                    if (dv > 1) s1 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, m + from)), s1);
                    if (dv > 2) s2 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, 2 * m + from)), s2);
                    if (dv > 3) s3 = TS.Fma(e, TS.Load(ref Unsafe.Add(ref vr, 3 * m + from)), s3);
                    continue;
                }
                for (; at < hi; at++)
                {
                    double e = double.Exp2(Logits<TV, TS>.ScaledScalar(kT, m, d, at, q, yh, log2e));
                    z += e;
                    a0 = Math.FusedMultiplyAdd(e, vT[at], a0);
                    if (dv > 1) a1 = Math.FusedMultiplyAdd(e, vT[m + at], a1);
                    if (dv > 2) a2 = Math.FusedMultiplyAdd(e, vT[2 * m + at], a2);
                    if (dv > 3) a3 = Math.FusedMultiplyAdd(e, vT[3 * m + at], a3);
                }
            }
            acc[0] += TS.SumAcross(sum) + z; acc[1] += TS.SumAcross(s0) + a0;
            if (dv > 1) acc[2] += TS.SumAcross(s1) + a1;
            if (dv > 2) acc[3] += TS.SumAcross(s2) + a2;
            if (dv > 3) acc[4] += TS.SumAcross(s3) + a3;
        }

        /// <summary>The direct keys' scaled logits (q·k_j − yHi)·s·log₂e by plain FMA dot products over the SoA keys — one
        /// definition for both direct-sum kernels (vector lanes over keys; the scalar form for the tail, in the same order).</summary>
        private readonly struct Logits<TV, TS> where TV : unmanaged where TS : ISimd<double, TV>
        {
            private readonly TV _q0, _q1, _q2, _q3, _ny, _sl;
            private readonly double[] _q;
            private readonly int _d;

            public Logits(double[] q, int d, double yh, double log2e)
            {
                _q = q; _d = d; _ny = TS.Broadcast(-yh); _sl = TS.Broadcast(log2e);
                _q0 = TS.Broadcast(q[0]);
                _q1 = d > 1 ? TS.Broadcast(q[1]) : TS.Zero; _q2 = d > 2 ? TS.Broadcast(q[2]) : TS.Zero; _q3 = d > 3 ? TS.Broadcast(q[3]) : TS.Zero;
            }

            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            public TV Scaled(ref double kr, int m, int at)
            {
                var x = TS.Fma(_q0, TS.Load(ref Unsafe.Add(ref kr, at)), _ny);
                if (_d > 1) x = TS.Fma(_q1, TS.Load(ref Unsafe.Add(ref kr, m + at)), x);
                if (_d > 2) x = TS.Fma(_q2, TS.Load(ref Unsafe.Add(ref kr, 2 * m + at)), x);
                if (_d > 3) x = TS.Fma(_q3, TS.Load(ref Unsafe.Add(ref kr, 3 * m + at)), x);
                for (int c = 4; c < _d; c++) x = TS.Fma(TS.Broadcast(_q[c]), TS.Load(ref Unsafe.Add(ref kr, c * m + at)), x);
                return TS.Mul(x, _sl);
            }

            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            public static double ScaledScalar(double[] kT, int m, int d, int at, double[] q, double yh, double log2e)
            {
                double x = -yh;
                for (int c = 0; c < d; c++) x = Math.FusedMultiplyAdd(q[c], kT[c * m + at], x);
                return x * log2e;
            }
        }

        /// <summary>w_j = 2^{(q·k_j − yHi)·s·log₂e} for j in [start, start + len); returns Σ_j w_j.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static double Weights<TV, TS>(double[] kT, int m, int d, int start, int len, double[] q, double yh, double log2e, Span<double> w)
            where TV : unmanaged where TS : ISimd<double, TV>
        {
            int lanes = TS.Count, j = 0;
            ref double kr = ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(kT);
            ref double wr = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(w);
            var sum = TS.Zero;
            var logit = new Logits<TV, TS>(q, d, yh, log2e);
            for (; j + lanes <= len; j += lanes)
            {
                var e = TS.Exp2(logit.Scaled(ref kr, m, start + j));
                TS.Store(e, ref Unsafe.Add(ref wr, j));
                sum = TS.Add(sum, e);
            }
            double total = TS.SumAcross(sum);
            for (; j < len; j++)
            {
                double e = double.Exp2(Logits<TV, TS>.ScaledScalar(kT, m, d, start + j, q, yh, log2e));
                w[j] = e; total += e;
            }
            return total;
        }

    }
}

/// <summary>Double-double addition on the numerics core's error-free transformations (<see cref="Numerics.FloatingPoint"/>).</summary>
internal static class Dd
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void TwoSum(double a, double b, out double s, out double e) => (s, e) = Numerics.FloatingPoint.TwoSum(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void TwoProduct(double a, double b, out double p, out double e) => (p, e) = Numerics.FloatingPoint.TwoProduct(a, b);

    /// <summary>(ah + al) + (bh + bl), error ≤ 4u²·(|a| + |b|).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Add(double ah, double al, double bh, double bl, out double sh, out double sl)
    {
        TwoSum(ah, bh, out double s, out double e);
        e += al + bl;
        sh = s + e;
        sl = e - (sh - s);
    }
}
