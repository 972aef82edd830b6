using FastAttention.Approximation;
using System.Numerics;
using FastAttention.Exact;

namespace FastAttention.RangeSearch;

/// <summary>
/// Algorithm 1 (ApproxAttention, Gupta et al. Lemmas 3.2–3.6, A.4) on float64 arrays, shared by <c>vector</c> (d = 1,
/// Algorithm 2), <c>range</c> and <c>lowrank</c> (on the reduced Q′, K′): per query the maximum logit within a
/// tolerance (<see cref="MomentTree.MaxSearch"/>), the relevant halfspace {k : s·q·k ≥ M − T} (Definition 3.2), and
/// Σ_relevant P(·)·(1, V) from the moments of a <see cref="MomentTree"/>.
/// <para><b>Expansion width chosen by counting.</b> The half-width H a node expansion may cover (logit width 2H) is
/// chosen per problem among candidates up to what float64 certifies at this ε: for each candidate the traversal runs
/// on a sample of queries, counting nodes visited, expansions and keys summed directly, and the predicted time
/// (queries + moment build) decides. The counts, extrapolated to all queries, are the planner's work estimate
/// (<see cref="Prepared.Estimate"/>): a Θ(n·m) plan shows up as direct keys ≈ m per query.</para>
/// <para><b>Certificate.</b> ε is split into discarding (ε/4, Lemma 3.2), and 2ρ‖V‖∞/(1 − ρ) with ρ the relative error
/// of the computed numerator and denominator. For an expanded node with centre weight e^{s·q·κ − M}, the polynomial
/// error (proven uniform bound δ of <see cref="CentredExpansion"/>) and the evaluation rounding are absolute:
/// ≤ e^{s·q·κ−M}·count·(δ + γu·Magnitude(h))·‖V‖∞; per query their sum R is divided by the computed row mass Ẑ,
/// which contains every collected key. A query whose R/Ẑ exceeds its share is recomputed with a smaller width H_safe
/// for which R/Z ≤ max_ν (δ + γu·Magnitude(h))·e^{h} holds a priori (every key of a node weighs ≥ e^{−h} of its centre
/// weight); so the certificate never depends on a sample. Keys summed directly err by a few units relative to their
/// own weights; logits carry the rounding of double-double dot products (or of plain ones where X·u is negligible).</para>
/// <para><b>Working band.</b> T = log(2m‖V‖∞/share) assumes all m keys just below the band; a query is first answered
/// with a narrower T′ = λT (λ chosen by counting, <see cref="Prepared"/>'s ChooseWorkingWidth), the mass of the keys it
/// drops bounded from its pruned nodes (count·e^{u − M}, u each node's logit upper bound) and checked against the same
/// share (Lemma 3.2 a posteriori); a query that fails is answered again with T. The dropped-keys term is unchanged.</para>
/// <para><b>Causal masks</b> (the relevant keys of query i are a halfspace intersected with the prefix j ≤ i): the
/// logarithmic method — a tree for every power-of-two block [t·2^{l+1}, t·2^{l+1} + 2^l) of positions (2^l ≥ 128), so
/// the prefix of query i is the union of the blocks of the binary digits of i + 1 (O(log m) trees) and at most 127 keys
/// summed directly. The blocks share the maximum and the threshold. Both alignments: the prefix is j ≤ i + o (o = 0
/// top-left, m − n bottom-right, <see cref="Options.CausalOffset"/>); a row that sees no key gets zeros.</para>
/// <para><b>Entries near the float64 limit.</b> V is scaled by a power of two to ‖V‖∞ ∈ [½, 1) (exact but for
/// underflow, charged), and every intermediate is then bounded; logits that overflow refuse (Overflow).</para>
/// </summary>
internal static class RangeEngine
{
    private const double U = RangeErrorBudget.U;
    /// <summary>The maximum search's tolerance in logit units (the row's maximum weight is at most e^{0.5} then).</summary>
    public const double MaxTolerance = 0.5;
    /// <summary>Causal blocks below 2^this keys are summed directly (at most 127 keys per query): a block of 16 keys is a
    /// single leaf and one of 64 has 7 nodes, so their trees cost more to search than their keys to scan — at d = 2,
    /// n = 2^18, B = 100 the 16384 trees of 2^4 blocks spent most of the query time in the maximum search.</summary>
    public const int MinBlockLog = 7;
    /// <summary>With a causal mask the queries run in blocks of 2^this consecutive positions (ascending), in the usual
    /// direction order within a block: query i's structures are the trees of the binary digits of i + 1 and a direct tail
    /// below i, so queries of one block share all trees above 2^this and their small trees and tails lie in one window of
    /// keys, while direction order across the whole n sent each query to a different tree set. d = 2, n = 2¹⁸, B = 100:
    /// 0.83–0.94 → 0.52–0.66 s in alternating runs (query phase 0.50 → 0.23–0.26 s); blocks of 2⁸ … 2¹⁴ all did as
    /// well; d = 3, B = 30, n = 2¹⁷: 0.66–0.72 → 0.53 s.</summary>
    public const int CausalQueryBlockLog = 10;
    /// <summary>One query in this many has its phases timed (the diagnostics' estimate; see <see cref="RangeFamilyParameters.MaxSearchSeconds"/>).</summary>
    public const int TimingStride = 64;
    /// <summary>Weight of an expansion's counted flops against <see cref="MachineRates.ScalarFlopsPerSecond"/> (which is
    /// calibrated on the polynomial method's long vector kernels): the expansions' short rows and the streaming of a
    /// node's moments ran at 1/3–1/5 of that rate (measured d = 2…4, n = 20000…2^18, Zen 3), and an unweighted count
    /// let d = 3, 4 plans run 1.4–2.7× slower than the exact kernel they were predicted to beat.</summary>
    public const double ExpansionFlopWeight = 3;
    /// <summary>Weight of the moment build's per-key flops (monomials of every key, then (dv + 1) columns): measured at
    /// 1/6–1/8 of the scalar rate.</summary>
    public const double MomentKeyFlopWeight = 6;
    /// <summary>Queries sampled to choose H and estimate work.</summary>
    public const int DefaultSample = 64;
    /// <summary>Candidate half-widths H (the chosen one is the cheapest by counting among those float64 certifies).</summary>
    public static readonly double[] Candidates = [0.75, 1.5, 2.5, 4, 6, 8.5, 11.5, 15];

    /// <summary>Options of one preparation (tests fix H or forbid the exact-kernel plan). <paramref name="CausalOffset"/>:
    /// with a causal mask query i sees keys j ≤ i + o (0 top-left, m − n bottom-right; <see cref="AttentionHead{T}.CausalOffset"/>).</summary>
    public readonly record struct Options(int Threads, MachineRates Rates, int Sample = DefaultSample, double? ForcedHalfWidth = null, bool AllowExact = true,
        int CausalOffset = 0, bool QueryWeightedSplits = true, double? WidthFraction = null, int? MaxSearchBudget = null);

    /// <summary>Candidate fractions λ of T for the working band T′ = λT (<see cref="Prepared"/> chooses by counting on the
    /// sample; 1 = the a-priori band only).</summary>
    public static readonly double[] WidthFractions = [1, 0.85, 0.75, 0.65, 0.55];

    /// <summary>
    /// Algorithm 1's preparation for one head: budget, key structures (geometry only), the maximum and traversal of a
    /// sample of queries, and the plan chosen by counting (H, moment threshold, or the exact kernel). Null when V = 0
    /// (the output is 0 exactly). The result is the plan's state: execute it (any number of times) with
    /// <see cref="Prepared.Execute"/>; its <see cref="Prepared.Cost"/> is the sampled work.
    /// </summary>
    public static Prepared? Prepare(string name, double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale,
        double epsilon, bool float32Output, bool causal, Options options)
    {
        int full = d;
        (q, k, d) = DropZeroCoordinates(q, k, n, m, d);
        var e = new Prepared(name, q, k, v, n, m, d, dv, scale, epsilon, float32Output, causal, options) { FullDimension = full };
        return e.Setup() ? e : null;
    }

    /// <summary>
    /// Drops the coordinates that are zero in every query or in every key: q_c·k_c = 0 exactly for each pair (the entries
    /// are finite), so every logit, its rounding and the certificate are those of the remaining d′ coordinates, and the
    /// search runs in d′ dimensions — C(g + d′, d′) moments per node instead of C(g + d, d), boxes that are not thin
    /// along an axis no logit sees. At least one coordinate is kept (all dropped: every logit is 0). E.g. keys in a
    /// d = 3 strip with queries in the plane of its normal and one long axis: 2.6× faster at n = 2¹⁹ (1 thread); fitted
    /// exponent over 2¹⁷…2²⁰ 1.82 → 1.49–1.66.
    /// </summary>
    internal static (double[] Q, double[] K, int D) DropZeroCoordinates(double[] q, double[] k, int n, int m, int d)
    {
        if (d < 2) return (q, k, d);
        var keep = new bool[d];
        int kept = 0;
        for (int c = 0; c < d; c++)
        {
            bool qZero = true, kZero = true;
            for (int i = 0; i < n && qZero; i++) qZero = q[i * d + c] == 0;
            for (int j = 0; j < m && kZero && !qZero; j++) kZero = k[j * d + c] == 0;
            keep[c] = !(qZero || kZero);
            if (keep[c]) kept++;
        }
        if (kept == d) return (q, k, d);
        if (kept == 0) { keep[0] = true; kept = 1; }
        return (Select(q, n), Select(k, m), kept);

        double[] Select(double[] x, int rows)
        {
            var r = new double[rows * kept];
            for (int i = 0; i < rows; i++)
                for (int c = 0, o = 0; c < d; c++)
                    if (keep[c]) r[i * kept + o++] = x[i * d + c];
            return r;
        }
    }

    /// <summary>Prepares and executes at once (low-rank's search in r dimensions, tests).</summary>
    public static (double[] Output, IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) Run(string name, double[] q, double[] k, double[] v,
        int n, int m, int d, int dv, double scale, double epsilon, bool float32Output, bool causal, Options options, CancellationToken cancel = default)
    {
        var p = Prepare(name, q, k, v, n, m, d, dv, scale, epsilon, float32Output, causal, options);
        var output = new double[n * dv];
        if (p is null) return (output, [], new TrivialParameters("V = 0: output 0 exactly"));
        using (p)
        {
            var (terms, parameters) = p.Execute<double>(output, options.Threads, cancel);
            return (output, terms, parameters);
        }
    }

    /// <summary>One head's prepared Algorithm 1 (see <see cref="Prepare"/>). Moments are built on the first execution, in
    /// pooled memory that <see cref="Dispose"/> returns (its plan's Dispose calls it).</summary>
    internal sealed class Prepared : IDisposable
    {
        private readonly string _name;
        private readonly double[] _q, _k, _v;
        private readonly int _n, _m, _d, _dv, _threads, _sample, _offset;
        private readonly double _scale, _epsilon;
        private readonly bool _float32, _causal;
        // set up by Prepare
        private double _vMax, _vScale;   // _vScale = 2^e, V was divided by it
        private double[] _vs = [];
        private RangeErrorBudget _budget = null!;
        private double _logitBound, _slack, _width, _rhoEval, _rhoGlobal;
        // The working band T′ ≤ T (_width) queries are first answered with, and the dropped-keys share its pruned mass must fit.
        private double _workWidth, _discardBound;
        private readonly double? _widthFraction;
        private readonly int? _maxSearchBudget;
        private bool _plain;
        private MomentTree[] _trees = [];
        private int[] _blockStart = [], _blockLog = [];
        private readonly Dictionary<long, int> _blockIndex = [];
        private double _buildSeconds, _geometrySeconds;
        // chosen plan
        private CentredExpansion? _exp;
        private double _h;
        private int _momentMinimum = int.MaxValue;
        private Plan _chosen = null!;
        private readonly List<Plan> _plans = [];
        private double _exactSeconds;
        private CostEstimate _exactCost = CostEstimate.Zero;
        private bool _useExact;
        private readonly bool _weightedSplits;
        private readonly double? ForcedHalfWidth;
        private readonly bool AllowExact;
        private readonly MachineRates _rates;
        private double _planSeconds;
        private readonly object _momentGate = new();
        /// <summary>d before <see cref="DropZeroCoordinates"/> (the search runs in _d ≤ it).</summary>
        public int FullDimension { get; init; }
        private bool _momentsBuilt, _disposed;
        private int _executing;

        public Prepared(string name, double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale, double epsilon,
            bool float32, bool causal, Options options)
        {
            _name = name; _q = q; _k = k; _v = v; _n = n; _m = m; _d = d; _dv = dv; _scale = scale; _epsilon = epsilon;
            _float32 = float32; _threads = Math.Max(1, options.Threads); _causal = causal; _sample = Math.Max(1, options.Sample);
            _offset = causal ? options.CausalOffset : 0;
            _rates = options.Rates; ForcedHalfWidth = options.ForcedHalfWidth; AllowExact = options.AllowExact; _weightedSplits = options.QueryWeightedSplits;
            _widthFraction = options.WidthFraction;
            _maxSearchBudget = options.MaxSearchBudget;
        }

        /// <summary>Geometry, sample and plan; false when V = 0.</summary>
        public bool Setup()
        {
            if (!PrepareBudget()) return false;
            BuildTrees();
            FinishBudget();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            SetUpPlans(Sample());
            _planSeconds = clock.Elapsed.TotalSeconds;
            return true;
        }

        /// <summary>A candidate plan: expansion (or none), its moment threshold and the counted work on the sample.</summary>
        private sealed record Plan(double H, CentredExpansion? Exp, int MomentMinimum, double Visits, double Expansions, double DirectKeys,
            double DirectRanges, double MaxNodes, CostEstimate QueryCost, CostEstimate BuildCost, double QuerySeconds, double BuildSeconds, long MomentBytes)
        {
            public double Seconds => QuerySeconds + BuildSeconds;
            public CostEstimate Cost => (QueryCost + BuildCost) with { Sampled = true };
        }

        private bool PrepareBudget()
        {
            _vMax = RangeErrorBudget.MaxAbs(_v);
            if (_vMax == 0) return false;
            if (!double.IsFinite(_vMax))
                ThrowHelper.Refused(_name, RefusalReason.Overflow, "V contains a non-finite value.");
            // ‖V‖∞ ∈ [½, 1) after an exact power-of-two scaling (only entries below 2^−1022·2^e lose bits; charged in the bound).
            int e = Math.ILogB(_vMax) + 1;
            _vScale = Math.ScaleB(1.0, e);
            _vs = new double[_v.Length];
            for (int i = 0; i < _v.Length; i++) _vs[i] = Math.ScaleB(_v[i], -e);
            double vMaxN = RangeErrorBudget.MaxAbs(_vs);
            double epsN = Math.ScaleB(_epsilon, -e);
            _logitBound = RangeErrorBudget.LogitBound(_q, _n, _k, _m, _d, _scale);
            if (!double.IsFinite(_logitBound))
                ThrowHelper.Refused(_name, RefusalReason.Overflow, $"the logits s·q·k overflow float64 (|s| = {Math.Abs(_scale):G3}, max‖q‖·max‖k‖ is not finite); scale Q or K down.");
            _budget = new RangeErrorBudget(_name, epsN, vMaxN, _m, _d, _logitBound, _float32);
            _width = _budget.Relevant.Width;
            _workWidth = _width;
            _discardBound = _budget.Relevant.OutputError(_budget.VMax);
            double d3 = (_d + 2.0) * (_d + 2) * (_d + 2);
            _slack = 8 * d3 * U * _logitBound + 1e-300;
            // Logit errors (relative weight error e^{δx} − 1): centre and key logits by double-double dot products against
            // the maximum (≤ 4u|x − M| + O(d³)u²X, |x − M| ≤ T + 2H + 1 for every collected weight that matters), the
            // frame coordinates' and translations' drift (≤ (4·depth + 8)u·H), and plain dot products where used.
            _plain = (2.0 * _d + 6) * U * _logitBound <= 0.01 * _budget.RhoMax;
            _rhoGlobal = 0; // set once the depth and H are known (FinishBudget)
            return true;
        }

        private void FinishBudget()
        {
            int depth = _trees.Length == 0 ? 0 : _trees.Max(t => t.Depth);
            double hMax = Math.Max(Candidates[^1], ForcedHalfWidth ?? 0); // valid for whichever width is chosen
            double d3 = (_d + 2.0) * (_d + 2) * (_d + 2);
            double dx = 4 * U * (_width + 2 * hMax + 8) + 64 * d3 * U * U * _logitBound + (4.0 * depth + 8) * U * hMax
                + (_plain ? (2.0 * _d + 6) * U * _logitBound : 0);
            // Each direct weight: exp (≤ 2 ulp), the scaling of its exponent (3u·|x|·log₂e), the product with v.
            double direct = (4 + 3 * 1.45 * (_width + 2 * hMax + 4)) * U;
            _rhoGlobal = double.ExpM1(dx) + 2 * U + direct;
            _rhoEval = _budget.RhoMax - _rhoGlobal;
            double floor = _rhoGlobal + 2.0 * (_m + 16) * U; // the all-direct sum must fit
            if (!(_budget.RhoMax > floor))
                ThrowHelper.Refused(_name, RefusalReason.Float64Reach, $"ε = {_epsilon:G3} is below float64's reach relative to ‖V‖∞ = {_vMax:G3}: relative accuracy {_budget.RhoMax:G2} would be needed, but logit and summation rounding alone cost {floor:G2}; ask for ε ≥ {_epsilon * 1.5 * floor / Math.Max(_budget.RhoMax, 1e-300):G2}.");
        }

        private void BuildTrees()
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            if (!_causal)
            {
                _trees = [new MomentTree(_k, _vs, 0, _m, _d, _dv, _threads, _weightedSplits ? MomentTree.QueryAxisWeights(_q, _n, _d) : null)];
                _blockStart = [0]; _blockLog = [-1];
            }
            else
            {
                int visible = (int)Math.Clamp((long)_n + _offset, 0, _m); // the last query's prefix
                var starts = new List<int>(); var logs = new List<int>();
                for (int l = MinBlockLog; (1 << l) <= visible; l++)
                    for (long s = 0; s + (1L << l) <= visible; s += 1L << (l + 1)) { starts.Add((int)s); logs.Add(l); }
                _blockStart = [.. starts]; _blockLog = [.. logs];
                _trees = new MomentTree[starts.Count];
                var weights = _weightedSplits ? MomentTree.QueryAxisWeights(_q, _n, _d) : null;
                // Largest blocks first (longest job first), so no thread is left building the biggest tree alone at the end.
                Parallel.For(0, starts.Count, new ParallelOptions { MaxDegreeOfParallelism = _threads }, r =>
                {
                    int b = starts.Count - 1 - r;
                    _trees[b] = new MomentTree(_k, _vs, _blockStart[b], 1 << _blockLog[b], _d, _dv, axisWeights: weights);
                });
                for (int b = 0; b < starts.Count; b++) _blockIndex[((long)_blockLog[b] << 32) | (uint)_blockStart[b]] = b;
            }
            _buildSeconds += clock.Elapsed.TotalSeconds;
            _geometrySeconds = clock.Elapsed.TotalSeconds;
        }

        /// <summary>Trees covering the visible keys of query i (largest first), and the start of the direct tail.</summary>
        private int Structures(int i, Span<int> trees, out int tailStart, out int tailEnd)
        {
            if (!_causal) { trees[0] = 0; tailStart = tailEnd = 0; return 1; }
            int p = Visible(i), count = 0;
            for (int l = 30; l >= MinBlockLog; l--)
            {
                if ((p & (1 << l)) == 0) continue;
                int s = p & ~((1 << (l + 1)) - 1);
                trees[count++] = _blockIndex[((long)l << 32) | (uint)s];
            }
            tailStart = p & ~((1 << MinBlockLog) - 1); tailEnd = p;
            return count;
        }

        /// <summary>Keys query i sees: all m, or with a causal mask the prefix j ≤ i + o (clamped to [0, m]).</summary>
        private int Visible(int i) => _causal ? (int)Math.Clamp((long)i + 1 + _offset, 0, _m) : _m;

        /// <summary>The maximum over the visible keys (within the tolerance): sets the scratch's double-double maximum.</summary>
        private void Maximum(MomentTree.Scratch sc, ReadOnlySpan<int> trees, int tailStart, int tailEnd, QueryStats st)
        {
            double best = double.NegativeInfinity;
            int bestTree = -1, bestKey = -1;
            var qi = sc.Q;
            // Warm start: the previous query's maximising key, when this query sees it (its logit is a true lower bound on
            // the maximum, so the branch and bound prunes from the first node on; consecutive queries share directions).
            if (sc.HintKey >= 0 && (sc.HintTree < 0 ? sc.HintKey >= tailStart && sc.HintKey < tailEnd : trees.Contains(sc.HintTree)))
            {
                var hk = sc.HintTree < 0 ? _k.AsSpan(sc.HintKey * _d, _d) : _trees[sc.HintTree].Key(sc.HintKey);
                double x = 0;
                for (int c = 0; c < _d; c++) x += sc.A[c] * hk[c];
                best = x; bestTree = sc.HintTree; bestKey = sc.HintKey;
            }
            // The direct tail first (at most 127 keys), then the trees from the largest.
            for (int j = tailStart; j < tailEnd; j++)
            {
                double x = 0;
                for (int c = 0; c < _d; c++) x += sc.A[c] * _k[j * _d + c];
                if (x > best) { best = x; bestTree = -1; bestKey = j; }
            }
            foreach (int t in trees)
            {
                int key = -1;
                double before = best;
                _trees[t].MaxSearch(sc, MaxTolerance, ref best, ref key, st, _maxSearchBudget ?? _trees[t].MaxSearchBudget);
                if (key >= 0 && best > before) { bestTree = t; bestKey = key; }
            }
            var kb = bestTree < 0 ? _k.AsSpan(bestKey * _d, _d) : _trees[bestTree].Key(bestKey);
            var (yh, yl) = RangeErrorBudget.Dot2(qi, kb);
            sc.SetMaximum(yh, yl);
            sc.HintTree = bestTree; sc.HintKey = bestKey;
        }

        private void SetUpPlans(int[] sample)
        {
            var candidates = new List<(double H, CentredExpansion? Exp, int MomentMin)>();
            if (ForcedHalfWidth is not > 0) candidates.Add((0, null, int.MaxValue));
            long keysTotal = _trees.Sum(t => (long)t.Count);
            long capBytes = Math.Max(64L << 20, 4 * keysTotal * (_d + _dv) * 16L);
            int depth = _trees.Length == 0 ? 0 : _trees.Max(t => t.Depth);
            double pairs = _causal ? ExactCausalPairs() : (double)_n * _m;
            _exactCost = new CostEstimate(2.0 * pairs * (_d + _dv) * 2, pairs * 2, 8.0 * ((double)_n * _d + (double)_m * (_d + _dv) + (double)_n * _dv));
            _exactSeconds = _exactCost.Seconds(_rates, _threads);
            // Every key is summed into the moments once, whatever the threshold: an expansion with more terms than this
            // costs more to build than the exact kernel to run, so its tables are never made (planning time at d = 3, 4).
            double perTerm = new CostEstimate(0, 0, 0, ScalarFlops: keysTotal * (2.0 * (_dv + 1) + 1) * MomentKeyFlopWeight).Seconds(_rates, _threads);
            int termCap = (int)Math.Clamp(1.1 * _exactSeconds / Math.Max(perTerm, 1e-300), 1, 40000);
            foreach (double h in ForcedHalfWidth is { } forced ? (forced > 0 ? [forced] : []) : Candidates)
            {
                CentredExpansion? exp;
                try { exp = CentredExpansion.TryCreate(_d, h, 0.25 * _rhoEval, ForcedHalfWidth is null ? termCap : int.MaxValue); }
                catch (AttentionRefusedException) { continue; }
                if (exp is null) continue;
                int momentMin = Math.Max(MomentTree.LeafSize + 1, (int)Math.Ceiling(exp.Terms * (_dv + 2.0) / (_d + _dv + 20)));
                momentMin = (int)Math.Max(momentMin, Math.Ceiling(2.0 * keysTotal * exp.Terms * (_dv + 1) * 8 / capBytes));
                // Float64 reach: a node whose keys average at least its centre weight must fit the rounding share.
                double units = exp.EvaluationUnits + exp.Degree + 3 + MomentTree.Chunk + 2.0 * momentMin / MomentTree.Chunk + depth * (exp.TranslationUnits + 1) + exp.FoldUnits;
                if (ForcedHalfWidth is null && units * U * exp.Magnitude(h) > 0.125 * _rhoEval) continue;
                candidates.Add((h, exp, momentMin));
            }
            if (candidates.Count == 0) candidates.Add((0, null, int.MaxValue));
            var scratch = new MomentTree.Scratch(_d, _dv, 1, 1);
            Span<int> trees = stackalloc int[40];
            // Maxima of the sample once.
            var maxHi = new double[sample.Length]; var maxLo = new double[sample.Length];
            var maxStats = new QueryStats();
            for (int r = 0; r < sample.Length; r++)
            {
                int i = sample[r];
                if (Visible(i) == 0) continue; // sees no key (bottom-right alignment, n > m): output 0, no work
                scratch.SetQuery(_q.AsSpan(i * _d, _d), _scale);
                int count = Structures(i, trees, out int ts, out int te);
                Maximum(scratch, trees[..count], ts, te, maxStats);
                maxHi[r] = scratch.YHi; maxLo[r] = scratch.YLo;
            }
            double perQuery = (double)_n / sample.Length;
            double bestSeconds = double.PositiveInfinity;
            // A plan predicted slower than the exact kernel by the margin below is never run when the exact plan is allowed.
            double exactCut = AllowExact && ForcedHalfWidth is null && ExactRho() <= 0.5 * _budget.RhoMax
                ? Math.Max(1.1 * _exactSeconds, _exactSeconds + 0.02) : double.PositiveInfinity;
            foreach (var (h, exp, baseMin) in candidates)
            {
                // The moment threshold is a second choice: larger thresholds build fewer moment nodes (cheaper
                // translations) but leave small nodes to be summed directly.
                for (int mult = 1; mult <= (ForcedHalfWidth is null ? 32 : 1); mult *= 2)
                {
                    int momentMin = exp is null ? int.MaxValue : (int)Math.Min(int.MaxValue, (long)baseMin * mult);
                    if (exp is not null && mult > 1 && momentMin > keysTotal) break;
                    // The moment build's cost does not depend on the queries: every key is summed once into the lowest
                    // moment nodes; the others translate their children.
                    var buildCost = CostEstimate.Zero;
                    long bytes = 0;
                    if (exp is not null)
                    {
                        double momentNodes = 2.0 * keysTotal / momentMin;
                        double keyFlops = keysTotal * (double)exp.Terms * (2.0 * (_dv + 1) + 1);
                        double translate = momentNodes * (_dv + 1) * exp.Terms * (exp.Degree / (_d + 1.0) + 1) * _d * 2;
                        bytes = (long)(momentNodes * exp.Terms * (_dv + 1) * 8);
                        buildCost = new CostEstimate(0, 0, bytes, ScalarFlops: keyFlops * MomentKeyFlopWeight + translate);
                    }
                    double buildSeconds = buildCost.Seconds(_rates, _threads);
                    // A plan whose build alone costs more than the best plan so far, or than the exact kernel, cannot be
                    // chosen: its sampled traversal is skipped (planning time at d = 3, 4 where C(g + d, d) is large).
                    if (exp is not null && ForcedHalfWidth is null && buildSeconds >= Math.Min(bestSeconds, exactCut)) continue;
                    var st = new QueryStats();
                    long tailKeys = 0;
                    double hMax = exp is null ? -1 : h * (1 - 64 * U);
                    bool abandoned = false;
                    double expFlops = ExpansionFlops(exp);
                    for (int r = 0; r < sample.Length; r++)
                    {
                        // Abandon a traversal whose partial counts (a lower bound on its cost) already exceed the best plan so
                        // far or the exact kernel, or whose counts extrapolated from the queries so far exceed them by a margin
                        // that shrinks as the sample grows (4× from a sixteenth of it, 2× from an eighth, 1.25× from a
                        // quarter; a plan that close is measured in full): planning time at d = 3, 4. The
                        // check costs a few flops against a traversal's thousands, so it runs after every query.
                        if (r > 0 && ForcedHalfWidth is null)
                        {
                            double bar = Math.Min(bestSeconds, exactCut);
                            double work = SampledSeconds(st.NodesVisited, st.DirectKeys + tailKeys, st.Expansions, expFlops) / _threads;
                            double margin = 4 * r >= sample.Length ? 1.25 : 8 * r >= sample.Length ? 2 : 16 * r >= sample.Length ? 4 : double.PositiveInfinity;
                            if (buildSeconds + work * perQuery >= bar || buildSeconds + work * _n / r >= margin * bar) { abandoned = true; break; }
                        }
                        int i = sample[r];
                        if (Visible(i) == 0) continue;
                        scratch.SetQuery(_q.AsSpan(i * _d, _d), _scale);
                        scratch.SetMaximum(maxHi[r], maxLo[r]);
                        int count = Structures(i, trees, out int ts, out int te);
                        tailKeys += te - ts;
                        double threshold = scratch.MaxLogit - _width - _slack;
                        foreach (int t in trees[..count])
                        {
                            scratch.ExpandedCount = 0; scratch.DirectCount = 0;
                            _trees[t].Collect(scratch, threshold, hMax, momentMin, st);
                        }
                    }
                    if (abandoned)
                    {
                        // A larger moment threshold only makes the build cheaper (the queries descend further and sum more
                        // keys directly): when the build was not what sank this plan, the larger thresholds are not tried.
                        if (exp is null || buildSeconds <= 0.25 * Math.Min(bestSeconds, exactCut)) break;
                        continue;
                    }
                    double visits = st.NodesVisited * perQuery, expansions = st.Expansions * perQuery, direct = (st.DirectKeys + tailKeys) * perQuery;
                    double ranges = st.DirectRanges * perQuery, maxNodes = maxStats.MaxSearchNodes * perQuery;
                    // Counted work in the planner's units (MachineRates): tree nodes (visits, maximum search, direct
                    // ranges), leaf keys (a compensated key counts as 4), float64 flops of the expansions.
                    var queryCost = new CostEstimate(0, 0, 0, TreeNodes: visits + maxNodes + ranges, LeafKeys: direct * (_plain ? 1 : 4),
                        ScalarFlops: expansions * expFlops * ExpansionFlopWeight + _n * 200.0) { Sampled = true };
                    double querySeconds = queryCost.Seconds(_rates, _threads);
                    bestSeconds = Math.Min(bestSeconds, querySeconds + buildSeconds);
                    _plans.Add(new Plan(h, exp, momentMin, visits, expansions, direct, ranges, maxNodes, queryCost, buildCost, querySeconds, buildSeconds, bytes));
                    if (exp is null) break;
                }
            }
            bool allAbandoned = _plans.Count == 0;
            if (allAbandoned)
            {
                // Every plan was abandoned against the exact kernel's cut: the exact plan (exactCut is finite only then).
                _plans.Add(new Plan(0, null, int.MaxValue, 0, 0, (double)_n * _m, 0, 0, _exactCost, CostEstimate.Zero, exactCut, 0, 0));
            }
            _chosen = _plans.MinBy(p => p.Seconds)!;
            _exp = _chosen.Exp; _h = _chosen.H; _momentMinimum = _chosen.MomentMinimum;
            // Summing every key is best done by the exact kernel: it is the plan when the range search is predicted
            // slower by a margin that matters (10% and 20 ms) — d = 3, 4 at moderate n, where C(g + d, d) moments per
            // node cost as much as the keys they replace. Tiny problems keep the range plan (nothing to gain either way).
            _useExact = allAbandoned || AllowExact && ForcedHalfWidth is null && _chosen.Seconds >= 1.1 * _exactSeconds && _chosen.Seconds - _exactSeconds >= 0.02
                && ExactRho() <= 0.5 * _budget.RhoMax;
            if (!_useExact) ChooseWorkingWidth(sample, maxHi, maxLo, scratch);
        }

        /// <summary>
        /// The working band T′ = λT by counting (λ in <see cref="WidthFractions"/>, or the tests' fixed fraction): the
        /// chosen plan's traversal on the sample at each λ, its work in the planner's units plus, for each sampled query
        /// whose dropped mass would fail <see cref="DiscardWithin"/> (estimated: the kept mass from the traversal's
        /// boxes, at least the maximum's weight 1), its work at T again. T itself is safe a priori for any input — all m
        /// keys just below the band — while the keys actually below M − T′ weigh far less on most: at d = 2, n = 2¹⁸,
        /// B = 10 the band 0.75T kept 98.5 % of the queries within the share and cut their expansions from 8.1 to 5.7
        /// (B = 30: 3.9 → 3.2 expansions and 260 → 208 direct keys at 0.85T). The plan (H, moment threshold) is chosen
        /// at T first; the planner's cost is left at T's (an over-estimate).
        /// </summary>
        private void ChooseWorkingWidth(int[] sample, double[] maxHi, double[] maxLo, MomentTree.Scratch scratch)
        {
            if (_widthFraction is double forced)
            {
                _workWidth = Math.Clamp(forced, 0.01, 1) * _width;
                return;
            }
            if (_n < 2 * sample.Length) return; // nothing to gain on tiny problems, and too few queries to tell
            double hMax = _exp is null ? -1 : _h * (1 - 64 * U), expFlops = ExpansionFlops(_exp);
            Span<int> trees = stackalloc int[40];
            var full = new double[sample.Length];
            var st = new QueryStats(); // cumulative: each query's work is the difference of the counters
            double bestCost = double.PositiveInfinity, best = 1;
            foreach (double lambda in WidthFractions)
            {
                double width = lambda * _width, cost = 0;
                for (int r = 0; r < sample.Length; r++)
                {
                    int i = sample[r];
                    if (Visible(i) == 0) continue;
                    scratch.SetQuery(_q.AsSpan(i * _d, _d), _scale);
                    scratch.SetMaximum(maxHi[r], maxLo[r]);
                    long nodes0 = st.NodesVisited, direct0 = st.DirectKeys, expansions0 = st.Expansions;
                    int count = Structures(i, trees, out int ts, out int te);
                    scratch.Discard = 0; scratch.KeptEstimate = 0;
                    scratch.TrackDiscard = scratch.EstimateKept = lambda < 1; scratch.DiscardShift = 2 * _slack;
                    foreach (int t in trees[..count])
                    {
                        scratch.ExpandedCount = 0; scratch.DirectCount = 0;
                        _trees[t].Collect(scratch, scratch.MaxLogit - width - _slack, hMax, _momentMinimum, st);
                    }
                    double work = SampledSeconds(st.NodesVisited - nodes0, st.DirectKeys - direct0 + te - ts, st.Expansions - expansions0, expFlops);
                    if (lambda == 1) full[r] = work;
                    // The kept mass is an estimate (moments are not built yet): with it at face value the sample predicted
                    // 6 % of queries failing at 0.65T where 26 % did (d = 2, n = 2¹⁸, B = 10), so a quarter of the share.
                    bool passes = lambda == 1 || 2 * 1.01 * scratch.Discard * _budget.VMax <= 0.25 * _discardBound * Math.Max(1, scratch.KeptEstimate);
                    cost += passes ? work : work + full[r];
                }
                scratch.TrackDiscard = scratch.EstimateKept = false;
                // A narrower band must save at least 3 % of the counted work (noise in the sample's counts).
                if (lambda == 1 ? cost < bestCost : cost < 0.97 * bestCost) { bestCost = cost; best = lambda; }
            }
            _workWidth = best * _width;
        }

        /// <summary>Counted float64 flops of evaluating one node expansion (0 without one): the moments' dot products, the
        /// powers and the centre weight.</summary>
        private double ExpansionFlops(CentredExpansion? exp) =>
            exp is null ? 0 : 2.0 * exp.Terms * (_dv + 1) + exp.Terms + 8.0 * RowCount(exp) + 4.0 * exp.Degree + 60;

        /// <summary>One thread's seconds for sampled traversal counts in the planner's units (MachineRates): nodes visited,
        /// keys summed directly (a compensated key counts as 4), expansions of <paramref name="expFlops"/> each.</summary>
        private double SampledSeconds(double nodes, double directKeys, double expansions, double expFlops) =>
            nodes * _rates.SecondsPerTreeNode + directKeys * (_plain ? 1 : 4) * _rates.SecondsPerLeafKey
            + expansions * expFlops * ExpansionFlopWeight / _rates.ScalarFlopsPerSecond;

        /// <summary>Relative error of the exact kernel's numerator and denominator (float64, logits by plain FMA dot
        /// products of s·log₂e·q with k, 2ˣ within 2 ulp, per-block sums and rescalings): ≤ 2(m + 256)u plus the logits'.</summary>
        private double ExactRho() => 2.0 * (_m + 256) * U + double.ExpM1(1.45 * (_d + 4) * U * _logitBound) + 6 * U;

        private static int RowCount(CentredExpansion e)
        {
            // C(g + d − 1, d − 1) rows of the lexicographic layout.
            double r = 1;
            for (int i = 1; i < e.D; i++) r = r * (e.Degree + i) / i;
            return (int)r;
        }

        private int[] Sample()
        {
            int count = Math.Min(_n, _sample);
            var rng = new Random(12345);
            var set = new HashSet<int>();
            if (count == _n) for (int i = 0; i < _n; i++) set.Add(i);
            else while (set.Count < count) set.Add(rng.Next(_n));
            var s = set.ToArray();
            Array.Sort(s);
            return s;
        }

        /// <summary>H_safe: the largest width for which R/Z is within the share a priori (every expanded node's keys weigh
        /// at least e^{−h} of its centre weight).</summary>
        private double SafeWidth(double evaluationUnits)
        {
            if (_exp is null) return -1;
            double best = -1;
            for (int i = 1; i <= 64; i++)
            {
                double h = _h * i / 64.0;
                double r = (_exp.AbsoluteError + evaluationUnits * U * _exp.Magnitude(h)) * Math.Exp(h) * 1.02;
                if (r <= 0.9 * _rhoEval) best = h * (1 - 64 * U);
            }
            return best;
        }

        /// <summary>The sampled work of the chosen plan in the planner's units (build included).</summary>
        public CostEstimate Cost => _useExact ? _exactCost with { Sampled = true } : _chosen.Cost;

        /// <summary>The planner's work estimate of the chosen plan (sampled counts, extrapolated to all n queries).</summary>
        public RangeWorkEstimate Estimate()
        {
            var p = _chosen;
            double exactPairs = _causal ? ExactCausalPairs() : (double)_n * _m;
            return new RangeWorkEstimate(_name, Math.Min(_n, _sample), p.H, p.Exp?.Degree ?? 0, p.Exp?.Terms ?? 0,
                p.Visits / _n, p.MaxNodes / _n, p.Expansions / _n, p.DirectKeys / _n,
                p.Visits, p.Expansions, p.DirectKeys, p.QuerySeconds, p.BuildSeconds, exactPairs, p.MomentBytes,
                _trees.Sum(t => t.OrientedNodes)) { PredictedExactSeconds = _exactSeconds, UsesExactKernel = _useExact };
        }

        private double ExactCausalPairs()
        {
            double s = 0;
            for (int i = 0; i < _n; i++) s += Visible(i);
            return s;
        }

        /// <summary>Answers every query (moments are built once, on the first execution); returns the output (n×dv,
        /// in the caller's units of V), the certificate's named terms and the parameters with the measured counters.</summary>
        public (IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) Execute<T>(Span<T> output, int threads, CancellationToken cancel)
            where T : unmanaged, IBinaryFloatingPointIeee754<T>
        {
            if (output.Length != _n * _dv) throw new ArgumentException("n×dv outputs", nameof(output));
            int executionThreads = Math.Max(1, threads);
            if (_useExact) return ExecuteExact(output, executionThreads);
            lock (_momentGate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (!_momentsBuilt)
                {
                    var build = System.Diagnostics.Stopwatch.StartNew();
                    if (_exp is not null)
                        foreach (var t in _trees) t.ComputeMoments(_exp, _momentMinimum, executionThreads);
                    _buildSeconds += build.Elapsed.TotalSeconds;
                    _momentsBuilt = true;
                }
                _executing++;
            }
            try { return Answer(output, executionThreads, cancel); }
            finally
            {
                lock (_momentGate)
                    if (--_executing == 0 && _disposed) ReleaseTrees();
            }
        }

        /// <summary>Returns the trees' pooled memory (keys, nodes, moments); an execution in progress keeps it until it
        /// ends. Executing afterwards throws <see cref="ObjectDisposedException"/>.</summary>
        public void Dispose()
        {
            lock (_momentGate)
            {
                _disposed = true;
                if (_executing == 0) ReleaseTrees();
            }
        }

        private void ReleaseTrees()
        {
            foreach (var t in _trees) t.Release();
            _momentsBuilt = false;
        }

        /// <summary>Every query answered from the built moments (see <see cref="Execute"/>).</summary>
        private (IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) Answer<T>(Span<T> output, int executionThreads, CancellationToken cancel)
            where T : unmanaged, IBinaryFloatingPointIeee754<T>
        {
            double momentUnits = _trees.Length == 0 ? 0 : _trees.Max(t => t.MomentUnits);
            double evalUnits = (_exp?.EvaluationUnits ?? 0) + momentUnits;
            double hSafe = SafeWidth(evalUnits);
            double hMax = _exp is null ? -1 : _h * (1 - 64 * U);
            // The call's temporaries (query order, ordered queries and rows) are pooled: fresh, they were 40 % of a d = 1,
            // n = 2²⁰ run's allocations, every page of them a page fault.
            using var orderBuffer = new KernelBuffer<int>(_n);
            using var orderedBuffer = new KernelBuffer<double>((long)_n * _d);
            using var orderedOutBuffer = new KernelBuffer<double>((long)_n * _dv);
            {
                var order = orderBuffer.Span;
                if (_d == 1) QueryOrder.Sorted(_q, order); else QueryOrder.ByDirection(_q, _n, _d, order, executionThreads);
                // Causal: blocks of 2^CausalQueryBlockLog consecutive positions, direction order within each — consecutive
                // queries then share their prefix's trees, direct tail and small trees in cache.
                if (_causal) QueryOrder.InPositionBlocks(order, CausalQueryBlockLog);
                // The queries copied in that order: each query's first read is then sequential, not a cache miss into Q.
                var orderedQ = orderedBuffer.Span;
                for (int r = 0; r < _n; r++) _q.AsSpan(order[r] * _d, _d).CopyTo(orderedQ.Slice(r * _d, _d));
            }
            // Rows written in query order and scattered once at the end: written in place, each query's row was a cache miss
            // into the output (n·dv doubles) interleaved with its traversal.
            var rhoWorst = new double[1];
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var stats = RangeSearchFamily.ForQueries(_n, executionThreads,
                () => (new QueryStats(), new MomentTree.Scratch(_d, _dv, _exp?.Terms ?? 1, _exp?.PowersWork ?? 1)), (from, to, local) =>
            {
                cancel.ThrowIfCancellationRequested();
                var (st, sc) = local; // one scratch per thread, reused across its blocks
                Span<int> trees = stackalloc int[40];
                Span<int> order = orderBuffer.Span;
                Span<double> ordered = orderedBuffer.Span, orderedOut = orderedOutBuffer.Span;
                double worst = 0;
                for (int r = from; r < to; r++)
                {
                    int i = order[r];
                    // The maximum's warm start restarts at every block of ForQueries: which key within the tolerance becomes
                    // the reference maximum, and so the output's last bits, is the same for any thread count.
                    if (r % RangeSearchFamily.QueryBlock == 0) sc.HintKey = -1;
                    if (Visible(i) == 0)
                    {
                        // Bottom-right alignment with n > m: this row sees no key (zeros, as the exact kernel gives).
                        orderedOut.Slice(r * _dv, _dv).Clear();
                        st.Queries++;
                        continue;
                    }
                    sc.SetQuery(ordered.Slice(r * _d, _d), _scale);
                    int count = Structures(i, trees, out int ts, out int te);
                    // Phase times are diagnostics: one query in TimingStride is timed (its ticks × TimingStride), since a
                    // clock read per phase and query cost ≈ 6 % of the whole run at B = 1 (d = 2, n = 2¹⁸).
                    int timed = r % TimingStride == 0 ? TimingStride : 0;
                    long t0 = timed > 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                    Maximum(sc, trees[..count], ts, te, st);
                    if (timed > 0) st.MaxTicks += (System.Diagnostics.Stopwatch.GetTimestamp() - t0) * timed;
                    double rho = SumWithin(sc, trees[..count], ts, te, hMax, hSafe, _workWidth, evalUnits, st, timed, out int terms);
                    if (_workWidth < _width && !DiscardWithin(sc, rho))
                    {
                        // The narrower band dropped too much mass for this query: the a-priori band T, whose bound needs no check.
                        st.Widened++;
                        rho = SumWithin(sc, trees[..count], ts, te, hMax, hSafe, _width, evalUnits, st, timed, out terms);
                    }
                    var acc = sc.Acc;
                    if (!(acc[0] > 0 && double.IsFinite(acc[0])))
                        ThrowHelper.Refused(_name, RefusalReason.NumericalFailure, $"the softmax denominator of query {i} is {acc[0]} (not a positive finite number); this input is outside what the range search certifies.");
                    double inv = 1 / acc[0];
                    for (int col = 0; col < _dv; col++) orderedOut[r * _dv + col] = acc[col + 1] * inv * _vScale;
                    worst = Math.Max(worst, rho);
                    st.Queries++;
                    st.MaxTerms = Math.Max(st.MaxTerms, terms);
                }
                lock (rhoWorst) rhoWorst[0] = Math.Max(rhoWorst[0], worst);
            });
            {
                Span<int> order = orderBuffer.Span;
                Span<double> rows = orderedOutBuffer.Span;
                foreach (double x in rows)
                    if (!double.IsFinite(x))
                        ThrowHelper.Refused(_name, RefusalReason.NumericalFailure, "a non-finite output appeared (an intermediate overflowed); this is outside what the range search certifies.");
                for (int r = 0; r < _n; r++)
                {
                    int at = order[r] * _dv;
                    for (int col = 0; col < _dv; col++) output[at + col] = T.CreateTruncating(rows[r * _dv + col]);
                }
            }
            double querySeconds = clock.Elapsed.TotalSeconds;
            double rhoTotal = rhoWorst[0] + _rhoGlobal;
            // Terms in units of the scaled V, then back (2^e·(ε/2^e) = ε exactly); V's scaling underflow adds ≤ 2^−1074.
            // With a working band T′ < T the dropped-keys term is the same share: each query's pruned mass at T′ was
            // checked against it (Lemma 3.2 a posteriori), or the query was answered with T.
            var terms = new List<ErrorTerm>(_workWidth < _width
                ? _budget.TermsFromRho(rhoTotal, dropped: "dropped keys (Lemma 3.2: below M − T′, their mass bounded per query from the pruned nodes, else below M − T)")
                : _budget.TermsFromRho(rhoTotal)) { new("V scaled to [½, 1) (subnormal rounding)", Math.ScaleB(1, -1070)) };
            _budget.Certify(_name, terms);
            IReadOnlyList<ErrorTerm> scaledTerms = ErrorTerms.Scale(terms, _vScale);
            double exactPairs = _causal ? ExactCausalPairs() : (double)_n * _m;
            var parameters = new RangeFamilyParameters
            {
                Plan = "range search", SearchDimension = SearchDimension(), HalfWidthH = _h, Degree = _exp?.Degree ?? 0, Monomials = _exp?.Terms ?? 0,
                PolynomialAbsoluteError = _exp?.AbsoluteError ?? 0, ThresholdT = _width, MomentMinimum = _exp is null ? 0 : _momentMinimum,
                SafeHalfWidth = hSafe, RedoneQueries = stats.Redone,
                WorkingThreshold = _workWidth < _width ? _workWidth : null, WidenedQueries = _workWidth < _width ? stats.Widened : null,
                NodesVisitedPerQuery = stats.PerQuery(stats.NodesVisited), ExpansionsPerQuery = stats.PerQuery(stats.Expansions),
                DirectKeysPerQuery = stats.PerQuery(stats.DirectKeys), PrunedPerQuery = stats.PerQuery(stats.Pruned),
                MaxSearchNodesPerQuery = stats.PerQuery(stats.MaxSearchNodes), ThresholdSearches = stats.ThresholdSearches, DirectKeysFraction = stats.DirectKeys / exactPairs,
                PredictedDirectKeysPerQuery = _chosen.DirectKeys / _n, PredictedExpansionsPerQuery = _chosen.Expansions / _n,
                Trees = _trees.Length, TreeNodes = _trees.Sum(t => t.NodeCount), MomentNodes = _trees.Sum(t => t.MomentNodes),
                OrientedNodes = _trees.Sum(t => t.OrientedNodes), TreeBytes = _trees.Sum(t => t.Bytes),
                PlainLogits = _plain, DiscardBound = _budget.Relevant.OutputError(_budget.VMax) * _vScale, RoundingRho = rhoTotal,
                Candidates = CandidateSummary(),
                BuildSeconds = _buildSeconds, GeometrySeconds = _geometrySeconds, PlanSeconds = _planSeconds, QuerySeconds = querySeconds,
                MaxSearchSeconds = (double)stats.MaxTicks / System.Diagnostics.Stopwatch.Frequency,
                CollectSeconds = (double)stats.CollectTicks / System.Diagnostics.Stopwatch.Frequency,
                AccumulateSeconds = (double)stats.AccumulateTicks / System.Diagnostics.Stopwatch.Frequency,
            };
            return (scaledTerms, parameters);
        }

        private int? SearchDimension() => _d < FullDimension ? _d : null;

        private string CandidateSummary() => string.Join(" ", _plans.GroupBy(p => p.H).Select(g => g.MinBy(p => p.Seconds)!)
            .Select(p => FormattableString.Invariant($"H={p.H}:{p.Seconds:G3}s")))
            + FormattableString.Invariant($" exact:{_exactSeconds:G3}s");

        /// <summary>The exact kernel on the scaled V, with its rounding bound as the certificate (no key discarded).</summary>
        private (IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) ExecuteExact<T>(Span<T> destination, int threads)
            where T : unmanaged, IBinaryFloatingPointIeee754<T>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var problem = new AttentionProblem<double>(_q, _k, _vs, _n, _m, _d, _dv, 1, _scale, _causal);
            if (_offset != 0)
            {
                // The only non-zero offset a head has is the bottom-right alignment's m − n.
                System.Diagnostics.Debug.Assert(_offset == _m - _n);
                problem = problem.WithMask(new AttentionMask { CausalAlignment = CausalAlignment.BottomRight });
            }
            var output = new Exact.FlashAttention().Compute(problem, new AttentionSettings { Threads = threads }).Output;
            foreach (double x in output)
                if (!double.IsFinite(x))
                    ThrowHelper.Refused(_name, RefusalReason.NumericalFailure, "a non-finite output appeared in the exact plan; this is outside what the range search certifies.");
            for (int i = 0; i < output.Length; i++) destination[i] = T.CreateTruncating(output[i] * _vScale);
            double rho = ExactRho(), vMax = _budget.VMax;
            var terms = new List<ErrorTerm>
            {
                new("exact kernel rounding (2ρ‖V‖∞/(1 − ρ), no key dropped)", 2 * rho * vMax / (1 - rho)),
                new("output division and conversion", _budget.OutputRounding),
                new("V scaled to [½, 1) (subnormal rounding)", Math.ScaleB(1, -1070)),
            };
            _budget.Certify(_name, terms);
            var parameters = new RangeFamilyParameters
            {
                Plan = "exact kernel (no range plan predicted faster)", SearchDimension = SearchDimension(), HalfWidthH = 0, Degree = 0, Monomials = 0, ThresholdT = _width,
                NodesVisitedPerQuery = 0, ExpansionsPerQuery = 0, DirectKeysPerQuery = (_causal ? ExactCausalPairs() : (double)_n * _m) / _n,
                MaxSearchNodesPerQuery = 0, DirectKeysFraction = 1, RoundingRho = rho, Trees = _trees.Length, Candidates = CandidateSummary(),
                BuildSeconds = _buildSeconds, GeometrySeconds = _geometrySeconds, PlanSeconds = _planSeconds, QuerySeconds = clock.Elapsed.TotalSeconds,
            };
            return (ErrorTerms.Scale(terms, _vScale), parameters);
        }

        /// <summary>Σ over the visible keys into sc.Acc with expansions up to half-width <paramref name="hMax"/> (−1: none);
        /// returns this query's ρ (polynomial, evaluation and accumulation rounding relative to the computed mass).</summary>
        private double Sum(MomentTree.Scratch sc, ReadOnlySpan<int> trees, int tailStart, int tailEnd, double hMax, double width, double evalUnits, QueryStats st, int timed, out int terms)
        {
            Array.Clear(sc.Acc);
            double threshold = sc.MaxLogit - width - _slack, approx = 0, magnitude = 0;
            terms = 0;
            sc.Discard = 0;
            sc.TrackDiscard = width < _width;
            sc.DiscardShift = 2 * _slack;
            foreach (int t in trees)
            {
                sc.ExpandedCount = 0; sc.DirectCount = 0;
                long before = st.DirectKeys;
                long t0 = timed > 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                _trees[t].Collect(sc, threshold, hMax, hMax < 0 ? int.MaxValue : _momentMinimum, st);
                long t1 = timed > 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                _trees[t].Accumulate(sc, _plain, evalUnits, ref approx, ref magnitude);
                if (timed > 0) { st.CollectTicks += (t1 - t0) * timed; st.AccumulateTicks += (System.Diagnostics.Stopwatch.GetTimestamp() - t1) * timed; }
                terms += sc.ExpandedCount + (int)(st.DirectKeys - before);
            }
            if (tailEnd > tailStart)
            {
                var acc = sc.Acc;
                var a = sc.A;
                for (int j = tailStart; j < tailEnd; j++)
                {
                    // A key below the threshold is irrelevant (Definition 3.2), as the trees prune it: its plain logit errs by
                    // ≤ (d + 1)u·X, far inside the slack the threshold already subtracts.
                    double x = 0;
                    for (int c = 0; c < _d; c++) x += a[c] * _k[j * _d + c];
                    if (x < threshold)
                    {
                        if (sc.TrackDiscard) MomentTree.AddDiscard(sc, 1, x); // a skipped tail key, bounded as a pruned node of one
                        continue;
                    }
                    double w = Math.Exp(_scale * RangeErrorBudget.DotMinus(sc.Q, _k.AsSpan(j * _d, _d), sc.YHi, sc.YLo));
                    acc[0] += w;
                    for (int col = 0; col < _dv; col++) acc[col + 1] += w * _vs[j * _dv + col];
                }
                st.DirectKeys += tailEnd - tailStart;
                terms += tailEnd - tailStart;
            }
            double z = sc.Acc[0];
            if (!(z > 0)) return double.PositiveInfinity;
            // |N̂ − N| ≤ (R + (terms + 6)u·magnitude)‖V‖ + (terms + 6)u·Σ w|v| (accumulation of the terms), Z ≥ Ẑ/1.01.
            return 1.01 * (approx + (terms + 6) * U * magnitude) / z + (terms + 6) * U;
        }

        /// <summary><see cref="Sum"/> at <paramref name="hMax"/>; a query whose ρ exceeds the evaluation share is redone with
        /// the a-priori safe width H_safe, then with no expansion.</summary>
        private double SumWithin(MomentTree.Scratch sc, ReadOnlySpan<int> trees, int tailStart, int tailEnd, double hMax, double hSafe, double width,
            double evalUnits, QueryStats st, int timed, out int terms)
        {
            double rho = Sum(sc, trees, tailStart, tailEnd, hMax, width, evalUnits, st, timed, out terms);
            if (rho <= _rhoEval) return rho;
            st.Redone++;
            rho = Sum(sc, trees, tailStart, tailEnd, hSafe, width, evalUnits, st, timed, out terms);
            return rho <= _rhoEval ? rho : Sum(sc, trees, tailStart, tailEnd, -1, width, evalUnits, st, timed, out terms);
        }

        /// <summary>
        /// Lemma 3.2 a posteriori: the keys the last <see cref="Sum"/> dropped have mass D ≤ sc.Discard (relative to the
        /// maximum's weight), and the kept ones Z ≥ Ẑ/(1 + ρ); the output then moves by at most 2·D/(Z + D)·‖V‖∞ ≤
        /// 2·(D/Z)·‖V‖∞. True when that is within the dropped-keys share of the certificate — the a-priori m·e^{−T} bound
        /// it replaces — with 1 % for the rounding of D's exponentials and sum.
        /// </summary>
        private bool DiscardWithin(MomentTree.Scratch sc, double rho)
        {
            double z = sc.Acc[0];
            if (!(rho < 0.5) || !(z > 0)) return false;
            return 2 * 1.01 * sc.Discard * _budget.VMax <= _discardBound * z / (1 + rho);
        }
    }
}

/// <summary>
/// A range-search algorithm's predicted work for one problem, from its traversal on a sample of queries (no moments
/// built): per-query counts and their extrapolation to all n queries, the predicted time, and the exact kernel's pair
/// count for comparison. A plan that sums ≈ m keys per query directly is Θ(n·m) and shows as
/// <see cref="DirectKeysFraction"/> ≈ 1.
/// </summary>
public sealed record RangeWorkEstimate(
    string Algorithm, int SampledQueries, double HalfWidth, int Degree, int Monomials,
    double NodesVisitedPerQuery, double MaxSearchNodesPerQuery, double ExpansionsPerQuery, double DirectKeysPerQuery,
    double TotalNodesVisited, double TotalExpansions, double TotalDirectKeys,
    double PredictedQuerySeconds, double PredictedBuildSeconds, double ExactPairs, long MomentBytes, int OrientedNodes)
{
    /// <summary>Keys summed one by one, as a fraction of the n·m (or causal) pairs the exact kernel computes.</summary>
    public double DirectKeysFraction => ExactPairs > 0 ? TotalDirectKeys / ExactPairs : 0;

    /// <summary>Predicted seconds of the range-search plan (queries + moments).</summary>
    public double PredictedSeconds => PredictedQuerySeconds + PredictedBuildSeconds;

    /// <summary>Predicted seconds of the exact kernel on the same problem (same calibration as the range plan).</summary>
    public double PredictedExactSeconds { get; init; }

    /// <summary>True when the range algorithm would compute this problem with the exact kernel, because its best range
    /// plan is predicted no faster.</summary>
    public bool UsesExactKernel { get; init; }

    internal static RangeWorkEstimate Zero(string name, int n, int m) => new(name, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (double)n * m, 0, 0);

    /// <summary>Sums the estimates of several heads.</summary>
    public static RangeWorkEstimate Sum(IReadOnlyList<RangeWorkEstimate> heads)
    {
        if (heads.Count == 1) return heads[0];
        double n = heads.Count;
        var h0 = heads[0];
        return h0 with
        {
            NodesVisitedPerQuery = heads.Average(h => h.NodesVisitedPerQuery), MaxSearchNodesPerQuery = heads.Average(h => h.MaxSearchNodesPerQuery),
            ExpansionsPerQuery = heads.Average(h => h.ExpansionsPerQuery), DirectKeysPerQuery = heads.Average(h => h.DirectKeysPerQuery),
            TotalNodesVisited = heads.Sum(h => h.TotalNodesVisited), TotalExpansions = heads.Sum(h => h.TotalExpansions),
            TotalDirectKeys = heads.Sum(h => h.TotalDirectKeys), PredictedQuerySeconds = heads.Sum(h => h.PredictedQuerySeconds),
            PredictedBuildSeconds = heads.Sum(h => h.PredictedBuildSeconds), ExactPairs = heads.Sum(h => h.ExactPairs),
            MomentBytes = heads.Max(h => h.MomentBytes), OrientedNodes = heads.Sum(h => h.OrientedNodes),
            PredictedExactSeconds = heads.Sum(h => h.PredictedExactSeconds), UsesExactKernel = heads.Any(h => h.UsesExactKernel),
        };
    }
}
