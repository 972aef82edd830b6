namespace FastAttention.RangeSearch;

/// <summary>
/// The halfspace range-searching structure of Lemma A.4 / Theorem 3.1 as used by Algorithm 1: a kd-tree over the keys
/// (median split along the widest box side) whose nodes store the centred moments Σ_j u_j^β·v_j and Σ_j u_j^β,
/// u = (k − κ)∘w⁻¹ ∈ [−1, 1]^d with κ the centre and w the half-widths of the node's bounding box — the φ_t of
/// Lemma 3.5 expanded about the node instead of the origin, so that no monomial of a large key is ever formed.
/// <para>A query with a = s·q and threshold θ = M − T visits nodes from the root: a node whose box lies entirely
/// below θ (a·κ + Σ|a_c|w_c &lt; θ) holds only irrelevant keys and is pruned; a node whose expansion is well conditioned
/// for this query (h = Σ|a_c|w_c ≤ H, which bounds |a·(k − κ)| on the whole box) is answered from its moments (keys below
/// θ inside it only add accuracy); other nodes are opened, and leaves are summed directly.</para>
/// <para>Crossing number (honest): Matoušek's partition trees guarantee O(n^{1−1/d}) nodes per halfspace query; this
/// kd-tree does not. For an axis-parallel boundary a kd-tree crosses O(n^{1−1/d}) cells, but for general hyperplanes the
/// worst case is Θ(n) nodes per query. The classic bad input — keys on a diagonal line and queries orthogonal to it, where
/// every key ties, every axis-aligned box straddles the boundary and no axis-aligned expansion is well conditioned —
/// is handled by giving thin nodes a principal-axis frame (then the whole line is one well-conditioned expansion); the
/// benchmark's 'line' distribution measures exactly this case. No worst-case bound better than Θ(n) per query is claimed
/// for other inputs. Memory is O(m·(d + dv)) for the keys plus C(g + d, d)·(dv + 1) per moment node; only nodes with at
/// least <see cref="MomentMinimum"/> keys (where moments are cheaper than summing) carry moments.</para>
/// Immutable after construction.
/// </summary>
internal sealed class HalfspaceRangeTree
{
    private const int Chunk = 256;
    private readonly double[] _keys, _values;   // permuted: node = contiguous range [lo, hi)
    private readonly int[] _lo, _hi, _left, _right, _momentOffset;
    private readonly double[] _centre, _half;    // nodes × d
    private readonly double[] _moments;
    private readonly CentredExpansion _exp;
    private readonly int _d, _dv, _stride;
    // Oriented ("thin") nodes: principal-axis frame R (columns), centre, extents along R's axes, frame error factor.
    private readonly int[] _frameOffset;
    private readonly double[] _frames, _ocentre, _oext, _oerr;

    public HalfspaceRangeTree(double[] k, double[] v, int m, int d, int dv, CentredExpansion exp, int leaf, int threads)
    {
        _d = d; _dv = dv; _exp = exp; Leaf = leaf;
        var perm = new int[m];
        for (int j = 0; j < m; j++) perm[j] = j;
        var lo = new List<int>(); var hi = new List<int>(); var left = new List<int>(); var right = new List<int>();
        var centre = new List<double>(); var half = new List<double>();
        Build(k, perm, 0, m, lo, hi, left, right, centre, half);
        _lo = [.. lo]; _hi = [.. hi]; _left = [.. left]; _right = [.. right]; _centre = [.. centre]; _half = [.. half];
        _keys = new double[m * d]; _values = new double[m * dv];
        for (int j = 0; j < m; j++)
        {
            Array.Copy(k, perm[j] * d, _keys, j * d, d);
            Array.Copy(v, perm[j] * dv, _values, j * dv, dv);
        }
        // Moments only where they are cheaper than direct sums: a direct key costs ≈ d + dv + 20 flops (exp), an expansion
        // ≈ Terms·(dv + 2).
        MomentMinimum = Math.Max(leaf + 1, (int)Math.Ceiling(exp.Terms * (dv + 2.0) / (d + dv + 20)));
        _stride = (dv + 1) * exp.Terms;
        int nodes = _lo.Length, withMoments = 0;
        _momentOffset = new int[nodes];
        for (int node = 0; node < nodes; node++)
            _momentOffset[node] = _hi[node] - _lo[node] >= MomentMinimum ? withMoments++ : -1;
        MomentNodes = withMoments;
        _moments = new double[(long)withMoments * _stride];
        // Thin nodes (keys near a lower-dimensional set, e.g. a diagonal line): their axis-aligned boxes overstate
        // |a·(k − κ)|, so they get a principal-axis frame and store moments in it (d ≥ 2, moment nodes only).
        _frameOffset = new int[nodes];
        Array.Fill(_frameOffset, -1);
        var frame = new double[nodes * d * d]; var oc = new double[nodes * d]; var oe = new double[nodes * d]; var oerr = new double[nodes];
        var thin = new bool[nodes];
        if (d >= 2)
        {
            Parallel.For(0, nodes, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) }, node =>
            {
                if (_momentOffset[node] >= 0)
                    thin[node] = PrincipalFrame(node, frame.AsSpan(node * d * d, d * d), oc.AsSpan(node * d, d), oe.AsSpan(node * d, d), out oerr[node]);
            });
        }
        int thinCount = 0;
        for (int node = 0; node < nodes; node++) if (thin[node]) _frameOffset[node] = thinCount++;
        ThinNodes = thinCount;
        _frames = new double[thinCount * d * d]; _ocentre = new double[thinCount * d]; _oext = new double[thinCount * d]; _oerr = new double[thinCount];
        for (int node = 0; node < nodes; node++)
        {
            int f = _frameOffset[node];
            if (f < 0) continue;
            Array.Copy(frame, node * d * d, _frames, f * d * d, d * d);
            Array.Copy(oc, node * d, _ocentre, f * d, d);
            Array.Copy(oe, node * d, _oext, f * d, d);
            _oerr[f] = oerr[node];
        }
        // Moments bottom-up, one depth at a time: a node whose children both carry moments gets them by translating the
        // children's moments to its own centre and scale (CentredExpansion.TranslateAdd, O(Terms·g) per child instead of
        // O(count·Terms)); other nodes sum their keys directly.
        var depth = new int[nodes];
        for (int node = 0; node < nodes; node++)
            if (_left[node] >= 0) { depth[_left[node]] = depth[node] + 1; depth[_right[node]] = depth[node] + 1; }
        Depth = depth.Length == 0 ? 0 : depth.Max();
        var opts = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
        for (int level = Depth; level >= 0; level--)
        {
            int lv = level;
            var ids = Enumerable.Range(0, nodes).Where(x => depth[x] == lv && _momentOffset[x] >= 0).ToArray();
            Parallel.For(0, ids.Length, opts, () => (new double[exp.Terms], new double[_stride], new double[d], new double[2 * exp.Terms], new double[2 * d]), (idx, _, buf) =>
            {
                int node = ids[idx];
                int l = _left[node], r = _right[node];
                if (_frameOffset[node] >= 0) Accumulate(node, buf.Item1, buf.Item2, buf.Item3);
                else if (l >= 0 && _momentOffset[l] >= 0 && _momentOffset[r] >= 0 && _frameOffset[l] < 0 && _frameOffset[r] < 0)
                {
                    Translate(node, l, buf.Item4, buf.Item5);
                    Translate(node, r, buf.Item4, buf.Item5);
                }
                else Accumulate(node, buf.Item1, buf.Item2, buf.Item3);
                return buf;
            }, _ => { });
        }
    }

    /// <summary>Depth of the tree (the number of translations a root moment went through, at most).</summary>
    public int Depth { get; }

    /// <summary>Nodes that carry a principal-axis frame.</summary>
    public int ThinNodes { get; }

    /// <summary>
    /// Principal axes of the node's keys (cyclic Jacobi on the d×d covariance), the box along them (centre, extents) and
    /// the frame's logit-error factor φ: for any a, |a·(k − κ) − (Rᵀa)·(Rᵀ(k − κ))| plus the rounding of the projection
    /// is at most ‖a‖₂·φ. Returns whether the oriented box is much thinner than the axis-aligned one (Π e &lt; Π w / 4).
    /// </summary>
    private bool PrincipalFrame(int node, Span<double> r, Span<double> centre, Span<double> ext, out double err)
    {
        int d = _d, lo = _lo[node], hi = _hi[node];
        Span<double> mean = stackalloc double[d]; Span<double> cov = stackalloc double[d * d];
        for (int j = lo; j < hi; j++) for (int c = 0; c < d; c++) mean[c] += _keys[j * d + c];
        for (int c = 0; c < d; c++) mean[c] /= hi - lo;
        for (int j = lo; j < hi; j++)
            for (int a = 0; a < d; a++)
                for (int b = 0; b < d; b++) cov[a * d + b] += (_keys[j * d + a] - mean[a]) * (_keys[j * d + b] - mean[b]);
        Jacobi(cov, r, d);
        Span<double> mn = stackalloc double[d]; Span<double> mx = stackalloc double[d];
        mn.Fill(double.PositiveInfinity); mx.Fill(double.NegativeInfinity);
        for (int j = lo; j < hi; j++)
            for (int k = 0; k < d; k++)
            {
                double p = 0;
                for (int c = 0; c < d; c++) p += r[c * d + k] * (_keys[j * d + c] - mean[c]);
                mn[k] = Math.Min(mn[k], p); mx[k] = Math.Max(mx[k], p);
            }
        double volO = 1, volA = 1, ext2 = 0;
        for (int k = 0; k < d; k++)
        {
            double mid = 0.5 * (mn[k] + mx[k]);
            ext[k] = Math.Max(mx[k] - mid, mid - mn[k]);
            volO *= ext[k]; volA *= _half[node * d + k];
        }
        for (int c = 0; c < d; c++)
        {
            double x = mean[c];
            for (int k = 0; k < d; k++) x += r[c * d + k] * 0.5 * (mn[k] + mx[k]);
            centre[c] = x;
        }
        // Every key lies within the oriented box around the new centre up to the projection's rounding; measure the
        // radius directly rather than trusting the extents, and the frame's departure from orthonormality.
        double radius2 = 0;
        for (int j = lo; j < hi; j++)
        {
            double s = 0;
            for (int c = 0; c < d; c++) { double t = _keys[j * d + c] - centre[c]; s += t * t; }
            radius2 = Math.Max(radius2, s);
        }
        double ortho = 0;
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++)
            {
                double s = 0;
                for (int k = 0; k < d; k++) s += r[a * d + k] * r[b * d + k];
                ortho += (s - (a == b ? 1 : 0)) * (s - (a == b ? 1 : 0));
            }
        for (int k = 0; k < d; k++) ext2 += ext[k] * ext[k];
        // Extents grow by the projection's rounding so that |u| ≤ 1 holds for the computed u.
        for (int k = 0; k < d; k++) ext[k] += (2 * d + 4) * RangeErrorBudget.U * Math.Sqrt(radius2);
        err = (Math.Sqrt(ortho) + (4.0 * d + 8) * RangeErrorBudget.U) * Math.Sqrt(radius2) * (1 + 1e-9);
        return volO < 0.25 * volA;
    }

    /// <summary>Cyclic Jacobi eigenvectors of a symmetric d×d matrix (destroyed); columns of <paramref name="v"/>.</summary>
    private static void Jacobi(Span<double> a, Span<double> v, int d)
    {
        v.Clear();
        for (int i = 0; i < d; i++) v[i * d + i] = 1;
        for (int sweep = 0; sweep < 50; sweep++)
        {
            double off = 0, diag = 0;
            for (int p = 0; p < d; p++) { diag += a[p * d + p] * a[p * d + p]; for (int q = p + 1; q < d; q++) off += a[p * d + q] * a[p * d + q]; }
            if (off <= 1e-32 * diag || off == 0) return;
            for (int p = 0; p < d; p++)
                for (int q = p + 1; q < d; q++)
                {
                    double apq = a[p * d + q];
                    if (apq == 0) continue;
                    double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                    double t = (theta >= 0 ? 1 : -1) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < d; k++) { double akp = a[k * d + p], akq = a[k * d + q]; a[k * d + p] = c * akp - s * akq; a[k * d + q] = s * akp + c * akq; }
                    for (int k = 0; k < d; k++) { double apk = a[p * d + k], aqk = a[q * d + k]; a[p * d + k] = c * apk - s * aqk; a[q * d + k] = s * apk + c * aqk; }
                    for (int k = 0; k < d; k++) { double vkp = v[k * d + p], vkq = v[k * d + q]; v[k * d + p] = c * vkp - s * vkq; v[k * d + q] = s * vkp + c * vkq; }
                }
        }
    }

    private void Translate(int parent, int child, double[] work, double[] ds)
    {
        int d = _d, terms = _exp.Terms;
        var delta = ds.AsSpan(0, d); var sigma = ds.AsSpan(d, d);
        for (int c = 0; c < d; c++)
        {
            double wp = _half[parent * d + c];
            delta[c] = wp > 0 ? (_centre[child * d + c] - _centre[parent * d + c]) / wp : 0;
            sigma[c] = wp > 0 ? _half[child * d + c] / wp : 0;
        }
        var src = _moments.AsSpan(_momentOffset[child] * _stride, _stride);
        var dst = _moments.AsSpan(_momentOffset[parent] * _stride, _stride);
        for (int col = 0; col <= _dv; col++)
            _exp.TranslateAdd(src.Slice(col * terms, terms), delta, sigma, dst.Slice(col * terms, terms), work);
    }

    public int Leaf { get; }
    public int NodeCount => _lo.Length;
    public int MomentNodes { get; }
    public int MomentMinimum { get; }
    public int Keys => _keys.Length / _d;
    /// <summary>Bytes held (keys, values, boxes, moments).</summary>
    public long Bytes => 8L * (_keys.Length + _values.Length + _centre.Length + _half.Length + _moments.LongLength) + 20L * _lo.Length;

    private int Build(double[] k, int[] perm, int lo, int hi, List<int> los, List<int> his, List<int> left, List<int> right, List<double> centre, List<double> half)
    {
        int d = _d, id = los.Count;
        los.Add(lo); his.Add(hi); left.Add(-1); right.Add(-1);
        int widest = 0; double widestHalf = -1;
        for (int c = 0; c < d; c++)
        {
            double mn = double.PositiveInfinity, mx = double.NegativeInfinity;
            for (int j = lo; j < hi; j++) { double x = k[perm[j] * d + c]; if (x < mn) mn = x; if (x > mx) mx = x; }
            double ctr = 0.5 * (mn + mx), w = Math.Max(mx - ctr, ctr - mn);
            centre.Add(ctr); half.Add(w);
            if (w > widestHalf) { widestHalf = w; widest = c; }
        }
        if (hi - lo > Leaf && widestHalf > 0)
        {
            int mid = lo + (hi - lo) / 2;
            Select(k, perm, lo, hi - 1, mid, widest);
            int l = Build(k, perm, lo, mid, los, his, left, right, centre, half);
            int r = Build(k, perm, mid, hi, los, his, left, right, centre, half);
            left[id] = l; right[id] = r;
        }
        return id;
    }

    /// <summary>Quickselect: puts the element of rank <paramref name="nth"/> (by coordinate c) at nth, smaller before, larger after.</summary>
    private void Select(double[] k, int[] perm, int lo, int hi, int nth, int c)
    {
        int d = _d;
        while (hi > lo)
        {
            double pivot = k[perm[lo + (hi - lo) / 2] * d + c];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (k[perm[i] * d + c] < pivot) i++;
                while (k[perm[j] * d + c] > pivot) j--;
                if (i <= j) { (perm[i], perm[j]) = (perm[j], perm[i]); i++; j--; }
            }
            if (nth <= j) hi = j;
            else if (nth >= i) lo = i;
            else return;
        }
    }

    /// <summary>Moments of one node, summed in chunks (rounding (chunk + count/chunk)·u relative to Σ|terms|).</summary>
    private void Accumulate(int node, double[] pw, double[] part, double[] u)
    {
        int terms = _exp.Terms, dv = _dv, d = _d;
        var mom = _moments.AsSpan(_momentOffset[node] * _stride, _stride);
        int f = _frameOffset[node];
        var ctr = f >= 0 ? _ocentre.AsSpan(f * d, d) : _centre.AsSpan(node * d, d);
        var half = f >= 0 ? _oext.AsSpan(f * d, d) : _half.AsSpan(node * d, d);
        for (int start = _lo[node]; start < _hi[node]; start += Chunk)
        {
            Array.Clear(part);
            int end = Math.Min(_hi[node], start + Chunk);
            for (int j = start; j < end; j++)
            {
                if (f < 0)
                    for (int c = 0; c < d; c++) u[c] = half[c] > 0 ? (_keys[j * d + c] - ctr[c]) / half[c] : 0;
                else
                    for (int k = 0; k < d; k++)
                    {
                        double p = 0;
                        for (int c = 0; c < d; c++) p += _frames[(f * d + c) * d + k] * (_keys[j * d + c] - ctr[c]);
                        u[k] = half[k] > 0 ? Math.Clamp(p / half[k], -1, 1) : 0;
                    }
                _exp.Powers(u, pw);
                for (int t = 0; t < terms; t++) part[t] += pw[t];
                for (int col = 0; col < dv; col++)
                {
                    double vj = _values[j * dv + col];
                    int off = (col + 1) * terms;
                    for (int t = 0; t < terms; t++) part[off + t] = Math.FusedMultiplyAdd(pw[t], vj, part[off + t]);
                }
            }
            for (int t = 0; t < _stride; t++) mom[t] += part[t];
        }
    }

    /// <summary>Per-thread buffers for queries.</summary>
    public sealed class Scratch(int d, int terms, int dv)
    {
        public readonly double[] A = new double[d], Z = new double[d], Rotated = new double[d], Weights = new double[terms], Acc = new double[dv + 1];
        public readonly int[] Stack = new int[256];
    }

    public Scratch CreateScratch() => new(_d, _exp.Terms, _dv);

    /// <summary>
    /// Exact maximum inner-product search (branch and bound on the boxes): the key maximising q·k, as an index into
    /// the tree's key order. Nodes whose upper bound a·κ + Σ|a_c|w_c cannot beat the best key so far are skipped.
    /// </summary>
    public int ArgMax(ReadOnlySpan<double> a, double tolerance, Scratch sc, QueryStats st)
    {
        int d = _d, sp = 0, best = 0;
        double bestVal = double.NegativeInfinity;
        var stack = sc.Stack;
        stack[sp++] = 0;
        while (sp > 0)
        {
            int node = stack[--sp];
            if (Upper(a, node) <= bestVal + tolerance) continue;
            st.MaxSearchNodes++;
            if (_left[node] < 0)
            {
                for (int j = _lo[node]; j < _hi[node]; j++)
                {
                    double x = 0;
                    for (int c = 0; c < d; c++) x += a[c] * _keys[j * d + c];
                    if (x > bestVal) { bestVal = x; best = j; }
                }
                continue;
            }
            int l = _left[node], r = _right[node];
            // Visit the more promising child first (pushed last).
            if (Upper(a, l) >= Upper(a, r)) { stack[sp++] = r; stack[sp++] = l; }
            else { stack[sp++] = l; stack[sp++] = r; }
        }
        return best;
    }

    /// <summary>An upper bound on a·k over the node's keys: the axis-aligned box, or the tighter oriented box when the node has one.</summary>
    private double Upper(ReadOnlySpan<double> a, int node)
    {
        int d = _d;
        double x = 0;
        for (int c = 0; c < d; c++) x += a[c] * _centre[node * d + c] + Math.Abs(a[c]) * _half[node * d + c];
        int f = _frameOffset[node];
        if (f < 0) return x;
        double y = 0;
        for (int k = 0; k < d; k++)
        {
            double ak = 0;
            for (int c = 0; c < d; c++) ak += a[c] * _frames[(f * d + c) * d + k];
            y += Math.Abs(ak) * _oext[f * d + k];
        }
        double an = 0;
        for (int c = 0; c < d; c++) { y += a[c] * _ocentre[f * d + c]; an += a[c] * a[c]; }
        return Math.Min(x, y + Math.Sqrt(an) * _oerr[f]);
    }

    public ReadOnlySpan<double> Key(int j) => _keys.AsSpan(j * _d, _d);

    /// <summary>
    /// Σ over the keys not pruned of e^{s·q·k − M}·(1, v) into sc.Acc, M = s·(yHi + yLo) the maximum logit.
    /// <paramref name="threshold"/> is M − T in plain arithmetic (a node is pruned when its upper bound is below it).
    /// Returns the number of terms accumulated.
    /// </summary>
    public int Sum(ReadOnlySpan<double> q, double scale, double yHi, double yLo, double threshold, double frameAllowance, Scratch sc, QueryStats st)
    {
        int d = _d, dv = _dv, sp = 0, terms = 0, nt = _exp.Terms;
        var a = sc.A; var z = sc.Z; var wt = sc.Weights; var acc = sc.Acc; var ar = sc.Rotated;
        double anorm = 0;
        for (int c = 0; c < d; c++) { a[c] = scale * q[c]; anorm += a[c] * a[c]; }
        anorm = Math.Sqrt(anorm);
        Array.Clear(acc);
        var stack = sc.Stack;
        stack[sp++] = 0;
        double hMax = _exp.H;
        while (sp > 0)
        {
            int node = stack[--sp];
            st.NodesVisited++;
            double centreLogit = 0, h = 0;
            for (int c = 0; c < d; c++)
            {
                centreLogit += a[c] * _centre[node * d + c];
                h += Math.Abs(a[c]) * _half[node * d + c];
            }
            if (centreLogit + h < threshold) { st.Pruned++; continue; }
            int off = _momentOffset[node], f = _frameOffset[node];
            if (f >= 0)
            {
                // Oriented node: bounds and expansion in its principal frame (moments are stored in that frame).
                double ho = 0, co = 0;
                for (int k = 0; k < d; k++)
                {
                    double ak = 0;
                    for (int c = 0; c < d; c++) ak += a[c] * _frames[(f * d + c) * d + k];
                    ar[k] = ak; ho += Math.Abs(ak) * _oext[f * d + k];
                }
                for (int c = 0; c < d; c++) co += a[c] * _ocentre[f * d + c];
                double frameError = anorm * _oerr[f];
                if (co + ho + frameError < threshold) { st.Pruned++; continue; }
                if (ho <= hMax && frameError <= frameAllowance)
                {
                    for (int k = 0; k < d; k++) z[k] = ar[k] * _oext[f * d + k] / hMax;
                    _exp.Weights(z, wt);
                    double fo = Math.Exp(scale * RangeErrorBudget.DotMinus(q, _ocentre.AsSpan(f * d, d), yHi, yLo));
                    var momo = _moments.AsSpan(off * _stride, _stride);
                    for (int col = 0; col <= dv; col++)
                        acc[col] += fo * System.Numerics.Tensors.TensorPrimitives.Dot<double>(wt, momo.Slice(col * nt, nt));
                    st.Expansions++; terms++;
                    continue;
                }
                if (_left[node] >= 0) { stack[sp++] = _right[node]; stack[sp++] = _left[node]; continue; }
            }
            else if (off >= 0 && h <= hMax)
            {
                // e^{s·q·k − M} = e^{s·q·κ − M}·e^{b·u}, b = a∘w, e^{b·u} ≈ Σ_β c_β z^β u^β with z = b/H.
                for (int c = 0; c < d; c++) z[c] = a[c] * _half[node * d + c] / hMax;
                _exp.Weights(z, wt);
                double fa = Math.Exp(scale * RangeErrorBudget.DotMinus(q, _centre.AsSpan(node * d, d), yHi, yLo));
                var mom = _moments.AsSpan(off * _stride, _stride);
                for (int col = 0; col <= dv; col++)
                    acc[col] += fa * System.Numerics.Tensors.TensorPrimitives.Dot<double>(wt, mom.Slice(col * nt, nt));
                st.Expansions++; terms++;
                continue;
            }
            if (_left[node] < 0)
            {
                for (int j = _lo[node]; j < _hi[node]; j++)
                {
                    double w = Math.Exp(scale * RangeErrorBudget.DotMinus(q, _keys.AsSpan(j * d, d), yHi, yLo));
                    acc[0] += w;
                    for (int col = 0; col < dv; col++) acc[col + 1] += w * _values[j * dv + col];
                }
                int cnt = _hi[node] - _lo[node];
                st.DirectKeys += cnt; terms += cnt;
            }
            else
            {
                stack[sp++] = _right[node];
                stack[sp++] = _left[node];
            }
        }
        return terms;
    }
}
