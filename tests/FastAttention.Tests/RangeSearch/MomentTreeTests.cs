using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class MomentTreeTests
{
    private const double U = 1.1102230246251565e-16;

    public static TheoryData<string, int> Sets() => new()
    {
        { "uniform", 1 }, { "uniform", 2 }, { "uniform", 3 }, { "uniform", 4 },
        { "duplicates", 2 }, { "equal", 3 }, { "one", 2 }, { "line", 2 }, { "constant", 3 }, { "strip", 2 }, { "sphere", 3 },
    };

    /// <summary>Point sets, random and degenerate: duplicates, all keys equal, one key, a diagonal line, a line with a
    /// constant coordinate (t, t, 0), a thin rotated strip and a sphere cap.</summary>
    internal static double[] Keys(string kind, int m, int d, int seed, double bound = 10)
    {
        var rng = new Random(seed);
        var k = new double[m * d];
        for (int j = 0; j < m; j++)
        {
            double t = (2 * rng.NextDouble() - 1) * bound;
            for (int c = 0; c < d; c++)
            {
                k[j * d + c] = kind switch
                {
                    "duplicates" => Math.Round((2 * rng.NextDouble() - 1) * 3),
                    "equal" => 1.5 - c,
                    "line" => t,
                    "constant" => c < 2 ? t : 0,
                    _ => (2 * rng.NextDouble() - 1) * bound,
                };
            }
            if (kind == "strip")
            {
                double x = t, y = (2 * rng.NextDouble() - 1) * 0.35 * bound / 30, cs = Math.Cos(0.5), sn = Math.Sin(0.5);
                k[j * d] = cs * x - sn * y; k[j * d + 1] = sn * x + cs * y;
            }
            if (kind == "segments")
            {
                // 64 short segments in seeded random directions: frames appear deep in the tree, in every subtree.
                var seg = new Random(1000 + j % 64);
                for (int c = 0; c < d; c++)
                {
                    double centre = (2 * seg.NextDouble() - 1) * bound, dir = 2 * seg.NextDouble() - 1;
                    k[j * d + c] = centre + 0.05 * bound * t / bound * dir;
                }
            }
            if (kind == "sphere")
            {
                double norm = 0;
                for (int c = 0; c < d; c++) { k[j * d + c] = GaussianLike(rng); norm += k[j * d + c] * k[j * d + c]; }
                norm = Math.Sqrt(norm);
                for (int c = 0; c < d; c++) k[j * d + c] *= bound / norm;
                k[j * d + d - 1] = Math.Abs(k[j * d + d - 1]); // the upper cap
            }
        }
        return k;
    }

    private static double GaussianLike(Random rng) => rng.NextDouble() + rng.NextDouble() + rng.NextDouble() - 1.5;

    private static int KeyCount(string kind) => kind == "one" ? 1 : 700;

    [Theory]
    [MemberData(nameof(Sets))]
    public void Range_counts_and_emptiness_match_brute_force(string kind, int d)
    {
        // Counting (Theorem 3.1's query) and emptiness with a witness (one step of Lemma A.4's binary search) at
        // thresholds exactly at keys' logits, just above and below them, and past the maximum.
        int m = KeyCount(kind);
        var k = Keys(kind, m, d, 3 + d);
        var tree = new MomentTree(k, new double[m], 0, m, d, 1);
        var sc = tree.CreateScratch();
        var rng = new Random(11);
        var q = new double[d];
        var x = new double[m];
        for (int trial = 0; trial < 30; trial++)
        {
            for (int c = 0; c < d; c++) q[c] = 2 * rng.NextDouble() - 1;
            if (trial % 5 == 0 && d >= 2) { Array.Clear(q); q[0] = 1; q[1] = -1; } // orthogonal to the diagonal: ties
            sc.SetQuery(q, 1.7);
            // The brute force uses the tree's own key order (the same float64 dot product per key).
            for (int j = 0; j < m; j++) { double s = 0; for (int c = 0; c < d; c++) s += sc.A[c] * tree.Key(j)[c]; x[j] = s; }
            var sorted = (double[])x.Clone();
            Array.Sort(sorted);
            foreach (double quantile in new[] { 0.0, 0.3, 0.5, 0.97, 1.0 })
            {
                double threshold = sorted[(int)(quantile * (m - 1))]; // exactly at a key's logit
                foreach (double shift in new[] { 0.0, 1e-9, -1e-9, -0.01, 0.25 })
                {
                    double th = threshold + shift;
                    long brute = x.Count(v => v >= th);
                    var st = new QueryStats();
                    long count = tree.CountAtLeast(sc, th, 1e-9, st);
                    Assert.Equal(brute, count);
                    bool found = tree.FirstAtLeast(sc, th, 1e-9, st, out int key, out double logit);
                    Assert.Equal(brute > 0, found);
                    if (found) { Assert.True(logit >= th); Assert.Equal(x[key], logit); }
                    else Assert.Equal(-1, key);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Sets))]
    public void Node_moments_match_direct_sums_within_the_certified_error(string kind, int d)
    {
        // dv = 1, 2, 4: the moment build sums three columns (the weight and two values) per pass, so one and two value
        // columns leave padded columns and four need a second pass.
        foreach (int dv in new[] { 1, 2, 4 }) NodeMomentsMatch(kind, d, dv);
    }

    [Theory]
    [InlineData("uniform", 1)] [InlineData("uniform", 2)] [InlineData("duplicate", 2)] [InlineData("large", 3)]
    public void Moments_built_in_poisoned_pooled_memory_are_still_exact_sums(string kind, int d)
    {
        // The tree's keys, values and nodes and its moments are rented from ArrayPool (and a released tree goes back
        // there): memory an earlier user left full of NaN or −1 must not reach a node, a translation (which adds into a
        // parent's slot) or the padding.
        NodeMomentsMatch(kind, d, 2, poison: true);
    }

    /// <summary>Fills this thread's pooled double and int arrays (every bucket up to 2²⁴) with NaN and −1: the next rents get them.</summary>
    private static void PoisonPool()
    {
        for (int b = 4; b <= 24; b++)
        {
            var a = System.Buffers.ArrayPool<double>.Shared.Rent(1 << b);
            a.AsSpan().Fill(double.NaN);
            System.Buffers.ArrayPool<double>.Shared.Return(a);
            var i = System.Buffers.ArrayPool<int>.Shared.Rent(1 << b);
            i.AsSpan().Fill(-1);
            System.Buffers.ArrayPool<int>.Shared.Return(i);
        }
    }

    private static void NodeMomentsMatch(string kind, int d, int dv, bool poison = false)
    {
        int m = KeyCount(kind);
        var k = Keys(kind, m, d, 5 + d);
        var v = TestData.Uniform(m * dv, 1, 6);
        var exp = CentredExpansion.Create(d, 6, 1e-9);
        if (poison)
        {
            // A first tree, released, then poisoned memory for the second; its moments built, released and built again.
            PoisonPool();
            var first = new MomentTree(k, v, 0, m, d, dv);
            first.ComputeMoments(exp, 1, 1);
            first.Release();
            first.Release(); // idempotent: nothing returned twice, so no two rents below get one array
            var rented = new List<double[]>();
            for (int b = 4; b <= 24; b++) { rented.Add(System.Buffers.ArrayPool<double>.Shared.Rent(1 << b)); rented.Add(System.Buffers.ArrayPool<double>.Shared.Rent(1 << b)); }
            Assert.Equal(rented.Count, rented.Distinct(ReferenceEqualityComparer.Instance).Count());
            foreach (var a in rented) System.Buffers.ArrayPool<double>.Shared.Return(a);
            PoisonPool();
        }
        var tree = new MomentTree(k, v, 0, m, d, dv);
        if (poison)
        {
            tree.ComputeMoments(exp, 1, 1);
            tree.ReleaseMoments();
            Assert.Equal(0, tree.MomentNodes);
            PoisonPool();
        }
        tree.ComputeMoments(exp, 1, poison ? 1 : 2); // every node, leaves included (1 thread when poisoned: this thread's pool)
        var sc = tree.CreateScratch();
        var rng = new Random(7);
        var q = new double[d];
        var acc = new double[dv + 1];
        int checkedNodes = 0;
        for (int node = 0; node < tree.NodeCount; node += 3)
        {
            for (int c = 0; c < d; c++) q[c] = 2 * rng.NextDouble() - 1;
            // Scale the query so the node's logit half-width is just within H: the expansion must be accurate there.
            sc.SetQuery(q, 1);
            double h = NodeHalfWidth(tree, sc, node);
            double scale = h > 0 ? 0.999 * exp.H / h : 1;
            sc.SetQuery(q, scale);
            int first = 0;
            double xmax = double.NegativeInfinity;
            for (int j = 0; j < m; j++)
            {
                double s = 0;
                for (int c = 0; c < d; c++) s += q[c] * tree.Key(j)[c];
                if (s > xmax) { xmax = s; first = j; }
            }
            var (yh, yl) = RangeErrorBudget.Dot2(q, tree.Key(first));
            sc.SetMaximum(yh, yl);
            Array.Clear(sc.Acc);
            sc.ExpandedCount = 0; sc.DirectCount = 0;
            sc.AddExpanded(node, NodeHalfWidth(tree, sc, node));
            double approx = 0, magnitude = 0;
            tree.Accumulate(sc, false, exp.EvaluationUnits + tree.MomentUnits, ref approx, ref magnitude);
            // Brute force over the node's keys.
            Array.Clear(acc);
            var (lo, hi) = NodeRange(tree, node);
            for (int j = lo; j < hi; j++)
            {
                double w = Math.Exp(scale * RangeErrorBudget.DotMinus(q, tree.Key(j), yh, yl));
                acc[0] += w;
                for (int col = 0; col < dv; col++) acc[col + 1] += w * v[tree.OriginalIndex(j) * dv + col];
            }
            for (int col = 0; col <= dv; col++)
            {
                double allowed = approx + 1e-12 * acc[0] + 1e-300;
                Assert.True(Math.Abs(sc.Acc[col] - acc[col]) <= allowed, $"{kind} dv {dv} node {node} col {col}: |{sc.Acc[col]:R} − {acc[col]:R}| > {allowed:E3}");
            }
            checkedNodes++;
        }
        Assert.True(checkedNodes >= 1);
    }

    [SimdTheory(16)] [InlineData(16, "uniform")] [InlineData(16, "large")] [InlineData(16, "duplicate")]
    public void Direct_ranges_at_16_lanes_match_brute_force(int lanes, string kind) => DirectRangesMatchBruteForce(lanes, kind);

    [SimdTheory(8)] [InlineData(8, "uniform")] [InlineData(8, "large")] [InlineData(8, "duplicate")]
    public void Direct_ranges_at_8_lanes_match_brute_force(int lanes, string kind) => DirectRangesMatchBruteForce(lanes, kind);

    [SimdTheory(4)] [InlineData(4, "uniform")] [InlineData(4, "large")] [InlineData(4, "duplicate")]
    public void Direct_ranges_at_4_lanes_match_brute_force(int lanes, string kind) => DirectRangesMatchBruteForce(lanes, kind);

    [Theory] [InlineData(1, "uniform")] [InlineData(1, "large")] [InlineData(1, "duplicate")]
    public void Direct_ranges_scalar_match_brute_force(int lanes, string kind) => DirectRangesMatchBruteForce(lanes, kind);

    /// <summary>The vectorised direct sums (every width of the ladder) over ranges of every length 1…19 — each SIMD remainder,
    /// ranges shorter than a vector, adjacent ranges merged — against float64 compensated sums of e^{s·q·k − M}·(1, v), on
    /// uniform keys, large entries (logits spanning ≈ 60, tiny weights) and all-duplicate keys (ties).</summary>
    private static void DirectRangesMatchBruteForce(int lanes, string kind)
    {
        const int m = 400;
        for (int d = 1; d <= 4; d++)
            foreach (int dv in new[] { 1, 2, 3, 4, 5, 7 }) // dv > 4: per range, weights then one dot product per column
            {
                double bound = kind == "large" ? 6 : 1;
                var k = TestData.Uniform(m * d, bound, 40 + d);
                if (kind == "duplicate") for (int j = 1; j < m; j++) Array.Copy(k, 0, k, j * d, d);
                var v = TestData.Uniform(m * dv, 1e3, 50 + dv); // a large V: absolute errors scale with it
                var tree = new MomentTree(k, v, 0, m, d, dv);
                var sc = tree.CreateScratch();
                var q = TestData.Uniform(d, bound, 60 + d);
                sc.SetQuery(q, 1);
                // The maximum over all keys (double-double), as the engine sets it.
                int arg = 0;
                double best = double.NegativeInfinity;
                for (int j = 0; j < m; j++)
                {
                    double x = 0;
                    for (int c = 0; c < d; c++) x += q[c] * tree.Key(j)[c];
                    if (x > best) { best = x; arg = j; }
                }
                var (yh, yl) = RangeErrorBudget.Dot2(q, tree.Key(arg));
                sc.SetMaximum(yh, yl);
                sc.DirectCount = 0;
                var ranges = new List<(int Lo, int Hi)>();
                for (int lo = 0, len = 1; lo + len <= m; lo += len + 3, len = len % 19 + 1) { sc.AddDirect(lo, lo + len); ranges.Add((lo, lo + len)); }
                sc.AddDirect(m - 5, m - 2); sc.AddDirect(m - 2, m); ranges.Add((m - 5, m)); // adjacent: merged into one
                Array.Clear(sc.Acc);
                tree.DirectRanges(sc, lanes);
                var expect = new double[dv + 1];
                var mag = new double[dv + 1];
                foreach (var (lo, hi) in ranges)
                    for (int j = lo; j < hi; j++)
                    {
                        double w = Math.Exp(RangeErrorBudget.DotMinus(q, tree.Key(j), yh, yl));
                        expect[0] += w; mag[0] += w;
                        for (int c = 0; c < dv; c++)
                        {
                            double x = v[tree.OriginalIndex(j) * dv + c];
                            expect[c + 1] += w * x; mag[c + 1] += Math.Abs(w * x);
                        }
                    }
                // Plain logits err by ≤ (d + 2)u·Σ|q_c k_c| ≤ 4·(d + 2)u·B²d here, 2ˣ by 2 ulp, the sums by (keys + 8)u.
                double logit = (d + 2) * 1.2e-16 * bound * bound * d * 4;
                for (int c = 0; c <= dv; c++)
                {
                    double allowed = mag[c] * (double.ExpM1(logit) + (m + 16) * 1.2e-16) + 1e-300;
                    Assert.True(Math.Abs(sc.Acc[c] - expect[c]) <= allowed,
                        $"{kind} lanes {lanes} d {d} dv {dv} col {c}: |{sc.Acc[c]:R} − {expect[c]:R}| > {allowed:E3}");
                }
            }
    }

    /// <summary>The node's frame logit half-width for the scratch's query (what Collect compares with H).</summary>
    private static double NodeHalfWidth(MomentTree tree, MomentTree.Scratch sc, int node) => tree.HalfWidth(sc, node);

    private static (int Lo, int Hi) NodeRange(MomentTree tree, int node) => tree.Range(node);

    [Theory]
    [InlineData("equal", 3)]
    [InlineData("line", 2)]
    [InlineData("constant", 3)]
    public void Maximum_search_on_ties_visits_one_path(string kind, int d)
    {
        int m = 2000;
        var k = Keys(kind, m, d, 9);
        var tree = new MomentTree(k, new double[m], 0, m, d, 1);
        var sc = tree.CreateScratch();
        var st = new QueryStats();
        var q = new double[d];
        q[0] = 3; q[1] = -3; // orthogonal to the diagonal: every key of 'line' and 'constant' ties
        sc.SetQuery(q, 1);
        double best = double.NegativeInfinity; int key = -1;
        tree.MaxSearch(sc, 0.5, ref best, ref key, st);
        Assert.True(key >= 0);
        Assert.True(st.MaxSearchNodes <= 2, $"{st.MaxSearchNodes} nodes for ties (depth {tree.Depth})");
        Assert.True(kind == "equal" || tree.OrientedNodes > 0);
    }

    [Theory]
    [InlineData("uniform", 2)]
    [InlineData("sphere", 3)]
    [InlineData("strip", 2)]
    [InlineData("uniform", 4)]
    public void Maximum_search_is_within_its_tolerance(string kind, int d)
    {
        int m = 1500;
        var k = Keys(kind, m, d, 13, 100);
        var tree = new MomentTree(k, new double[m], 0, m, d, 1);
        var sc = tree.CreateScratch();
        var rng = new Random(14);
        var q = new double[d];
        for (int trial = 0; trial < 50; trial++)
        {
            for (int c = 0; c < d; c++) q[c] = (2 * rng.NextDouble() - 1) * 100;
            sc.SetQuery(q, 1);
            double best = double.NegativeInfinity, truth = double.NegativeInfinity; int key = -1;
            tree.MaxSearch(sc, 0.5, ref best, ref key, new QueryStats());
            for (int j = 0; j < m; j++) { double s = 0; for (int c = 0; c < d; c++) s += q[c] * k[j * d + c]; truth = Math.Max(truth, s); }
            Assert.True(best >= truth - 0.5 - 1e-6 * Math.Abs(truth), $"found {best} < max {truth} − tolerance");
            Assert.True(best <= truth + 1e-6 * Math.Abs(truth));
        }
    }

    /// <summary>The maximum of a query over the tree's keys in its own order (the same float64 dot product per key).</summary>
    private static double BruteMaximum(MomentTree tree, MomentTree.Scratch sc, out double logitScale)
    {
        double best = double.NegativeInfinity;
        logitScale = 0;
        for (int j = 0; j < tree.Count; j++)
        {
            double s = 0, a = 0;
            for (int c = 0; c < tree.D; c++) { s += sc.A[c] * tree.Key(j)[c]; a += Math.Abs(sc.A[c] * tree.Key(j)[c]); }
            best = Math.Max(best, s); logitScale = Math.Max(logitScale, a);
        }
        return best;
    }

    private static double KeyLogit(MomentTree tree, MomentTree.Scratch sc, int j)
    {
        double s = 0;
        for (int c = 0; c < tree.D; c++) s += sc.A[c] * tree.Key(j)[c];
        return s;
    }

    [Theory]
    [MemberData(nameof(Sets))]
    [InlineData("segments", 4)]
    public void Threshold_search_finds_the_maximum_within_its_tolerance(string kind, int d)
    {
        // Lemma A.4's binary search, alone (from no key in hand) and as the branch and bound's fallback (a budget of one
        // node forces it on every query that opens the root), against the brute-force maximum: the key returned is a real
        // key with that logit, and no key beats it by more than the tolerance.
        int m = KeyCount(kind);
        var k = Keys(kind, m, d, 17 + d, 100);
        var tree = new MomentTree(k, new double[m], 0, m, d, 1);
        var sc = tree.CreateScratch();
        var rng = new Random(18);
        var q = new double[d];
        long fallbacks = 0;
        for (int trial = 0; trial < 40; trial++)
        {
            for (int c = 0; c < d; c++) q[c] = (2 * rng.NextDouble() - 1) * 30;
            if (trial % 7 == 0) Array.Clear(q); // a zero query: every logit ties at 0
            if (trial % 7 == 1 && d >= 2) { Array.Clear(q); q[0] = 3; q[1] = -3; } // orthogonal to the diagonal
            sc.SetQuery(q, 1.3);
            double truth = BruteMaximum(tree, sc, out double scale);
            double slack = 8 * (d + 2) * U * scale + 1e-300;
            foreach (bool alone in new[] { true, false })
            {
                double best = double.NegativeInfinity; int key = -1;
                var st = new QueryStats();
                if (alone) tree.ThresholdSearch(sc, 0.5, double.PositiveInfinity, ref best, ref key, st);
                else tree.MaxSearch(sc, 0.5, ref best, ref key, st, budget: 1);
                fallbacks += st.ThresholdSearches;
                Assert.True(key >= 0 && key < m, $"{kind} d {d}: no key returned");
                Assert.Equal(KeyLogit(tree, sc, key), best);
                Assert.True(best >= truth - 0.5 - slack, $"{kind} d {d} ({(alone ? "alone" : "fallback")}): {best:R} < max {truth:R} − 0.5");
                Assert.True(best <= truth);
            }
        }
        // d ≤ 2 answers from the keys' hull before any node is opened; above it the one-node budget must hand over.
        if (d >= 3 && kind != "equal") Assert.True(fallbacks > 0, "the budget never handed over to the threshold search");
    }

    [Theory]
    [InlineData("uniform", 2)]
    [InlineData("uniform", 3)]
    [InlineData("uniform", 4)]
    [InlineData("sphere", 3)]
    [InlineData("strip", 2)]
    [InlineData("segments", 4)]
    public void Branch_and_bound_costs_no_more_than_one_counting_query(string kind, int d)
    {
        // The branch and bound (cold: no warm start; at d = 2 it answers from the keys' hull) against the cheapest certificate any threshold method must
        // produce — one range-counting query at the maximum plus the tolerance, which visits every node its hyperplane
        // crosses — and against Lemma A.4's binary search, whose log₂(range/tolerance) steps each pay such a query.
        int m = 8192;
        var k = Keys(kind, m, d, 29 + d, 100);
        var tree = new MomentTree(k, new double[m], 0, m, d, 1);
        var sc = tree.CreateScratch();
        var rng = new Random(30);
        var q = new double[d];
        long branch = 0, counting = 0, thresholds = 0;
        for (int trial = 0; trial < 60; trial++)
        {
            for (int c = 0; c < d; c++) q[c] = (2 * rng.NextDouble() - 1) * 10;
            sc.SetQuery(q, 1);
            double truth = BruteMaximum(tree, sc, out _);
            var s1 = new QueryStats(); double b1 = double.NegativeInfinity; int k1 = -1;
            tree.MaxSearch(sc, 0.5, ref b1, ref k1, s1, tree.MaxSearchBudget);
            var s2 = new QueryStats(); double b2 = double.NegativeInfinity; int k2 = -1;
            tree.ThresholdSearch(sc, 0.5, double.PositiveInfinity, ref b2, ref k2, s2);
            var s3 = new QueryStats();
            Assert.Equal(0, tree.CountAtLeast(sc, truth + 0.5 + 1e-9, 1e-9, s3));
            Assert.Equal(0, s1.ThresholdSearches); // the default budget is never reached here
            branch += s1.MaxSearchNodes; thresholds += s2.MaxSearchNodes; counting += s3.NodesVisited;
        }
        Assert.True(branch <= counting, $"{kind} d {d}: branch and bound {branch} nodes > one counting query {counting}");
        Assert.True(branch < thresholds, $"{kind} d {d}: branch and bound {branch} nodes ≥ binary search {thresholds}");
    }

    [Fact]
    public void One_column_keys_and_values_are_stored_once()
    {
        // d = 1 keys and dv = 1 values are their own column-major copies: the tree keeps one array of each, and its
        // sums read the same numbers (the moment and direct-sum tests above cover d = 1 with dv = 1, 2, 4).
        int m = 1 << 16;
        var k = TestData.Uniform(m, 10, 1);
        var v = TestData.Uniform(m, 1, 2);
        new MomentTree(k, v, 0, m, 1, 1); // warm-up (JIT allocations)
        long before = GC.GetAllocatedBytesForCurrentThread();
        var tree = new MomentTree(k, v, 0, m, 1, 1);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // Keys, values, positions and the sort's buffers (8 + 8 + 4 + 2·(8 + 4) + 8 bytes per key) plus the nodes'
        // links, boxes and lists: two more copies of 8 bytes per key would exceed it.
        long perKey = 8 + 8 + 4 + 24 + 8, nodes = tree.NodeCount;
        Assert.True(allocated <= perKey * m + 400L * nodes, $"{allocated} bytes for {m} keys and {nodes} nodes");
        Assert.True(tree.Bytes <= 16L * m + 64L * nodes, $"tree.Bytes = {tree.Bytes}");
    }

    [Fact]
    public void A_constant_coordinate_does_not_disable_the_principal_frame()
    {
        int m = 3000;
        // (t, t, 0): the axis box has a zero half-width; the frame must still be found.
        var tree = new MomentTree(Keys("constant", m, 3, 21), new double[m], 0, m, 3, 1);
        Assert.True(tree.OrientedNodes > 0);
        // (t, 0): already axis-aligned and thin, no frame needed.
        var k = new double[m * 2];
        for (int j = 0; j < m; j++) k[j * 2] = j;
        var flat = new MomentTree(k, new double[m], 0, m, 2, 1);
        Assert.Equal(0, flat.OrientedNodes);
    }

    [Theory]
    [InlineData("uniform", 1)]
    [InlineData("uniform", 3)]
    [InlineData("constant", 3)]
    [InlineData("strip", 2)]
    [InlineData("duplicates", 2)]
    [InlineData("segments", 3)]
    public void The_tree_built_on_several_threads_is_the_tree_built_on_one(string kind, int d)
    {
        // Large enough that the root and its children fork (ParallelMinimum = 8192 keys per side).
        int m = 4 * MomentTree.ParallelMinimum + 37;
        var k = Keys(kind, m, d, 40 + d);
        var v = new double[m];
        for (int j = 0; j < m; j++) v[j] = j % 7 - 3;
        var one = new MomentTree(k, v, 0, m, d, 1);
        var four = new MomentTree(k, v, 0, m, d, 1, threads: 4);
        Assert.Equal(one.NodeCount, four.NodeCount);
        Assert.Equal(one.FrameCount, four.FrameCount);
        Assert.Equal(one.OrientedNodes, four.OrientedNodes);
        Assert.Equal(one.Depth, four.Depth);
        if (kind is "constant" or "segments") Assert.True(one.OrientedNodes > 0, "the set must exercise frames");
        if (kind == "segments") Assert.True(one.FrameCount > 8, $"frames in every subtree: {one.FrameCount}");
        for (int j = 0; j < m; j++) Assert.Equal(one.OriginalIndex(j), four.OriginalIndex(j));
        var q = new double[d];
        for (int c = 0; c < d; c++) q[c] = 0.3 + c;
        var s1 = one.CreateScratch(); var s4 = four.CreateScratch();
        s1.SetQuery(q, 1); s4.SetQuery(q, 1);
        for (int node = 0; node < one.NodeCount; node++)
        {
            Assert.Equal(one.Range(node), four.Range(node));
            Assert.Equal(one.HalfWidth(s1, node), four.HalfWidth(s4, node)); // box and frame of every node, bit for bit
        }
    }

    [SimdTheory(16)] [InlineData(1, 16)] [InlineData(2, 16)] [InlineData(3, 16)] [InlineData(4, 16)] [InlineData(5, 16)] [InlineData(9, 16)]
    public void Coordinate_box_at_16_lanes_matches_brute_force(int d, int lanes) => CoordinateBoxMatchesBruteForce(d, lanes);

    [SimdTheory(8)] [InlineData(1, 8)] [InlineData(2, 8)] [InlineData(3, 8)] [InlineData(4, 8)] [InlineData(5, 8)] [InlineData(9, 8)]
    public void Coordinate_box_at_8_lanes_matches_brute_force(int d, int lanes) => CoordinateBoxMatchesBruteForce(d, lanes);

    [SimdTheory(4)] [InlineData(1, 4)] [InlineData(2, 4)] [InlineData(3, 4)] [InlineData(4, 4)] [InlineData(5, 4)] [InlineData(9, 4)]
    public void Coordinate_box_at_4_lanes_matches_brute_force(int d, int lanes) => CoordinateBoxMatchesBruteForce(d, lanes);

    [Theory] [InlineData(1, 1)] [InlineData(2, 1)] [InlineData(3, 1)] [InlineData(9, 1)] [InlineData(17, 0)]
    public void Coordinate_box_scalar_and_wide_d_match_brute_force(int d, int lanes) => CoordinateBoxMatchesBruteForce(d, lanes);

    /// <summary>Per-coordinate minimum and maximum at one width (0 = the default), every row count 0…19 (each remainder of
    /// w rows), signed zeros, huge entries and the extreme in the scalar tail.</summary>
    private static void CoordinateBoxMatchesBruteForce(int d, int lanes)
    {
        var rng = new Random(d);
        var mn = new double[d]; var mx = new double[d];
        for (int n = 0; n <= 19; n++)
        {
            var rows = new double[n * d];
            for (int i = 0; i < rows.Length; i++)
                rows[i] = (i % 5) switch { 0 => 0.0, 1 => -0.0, 2 => 1e300 * (rng.NextDouble() - 0.5), _ => rng.NextDouble() * 2 - 1 };
            if (n > 0) rows[^1] = -1e308; // the extreme in the scalar tail (when n is not a multiple of the lanes)
            MomentTree.CoordinateBox(rows, d, mn, mx, lanes);
            for (int c = 0; c < d; c++)
            {
                double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                for (int j = 0; j < n; j++) { lo = Math.Min(lo, rows[j * d + c]); hi = Math.Max(hi, rows[j * d + c]); }
                Assert.True(lo == mn[c] && hi == mx[c], $"d = {d}, n = {n}, coordinate {c}, lanes {lanes}: [{mn[c]}, {mx[c]}] against [{lo}, {hi}]");
            }
        }
    }

    [Theory]
    [InlineData("uniform", 5000)]
    [InlineData("duplicate", 700)]
    [InlineData("signed-zeros", 300)]
    [InlineData("uniform", 1)]
    [InlineData("uniform", 2)]
    public void One_dimensional_tree_is_sorted_with_exact_boxes(string kind, int m)
    {
        // d = 1 sorts the keys once instead of selecting medians: tree order ascending, every node's box its exact extent,
        // the left child below the right one, and the permutation a bijection onto the input keys.
        var rng = new Random(m);
        var k = new double[m];
        for (int j = 0; j < m; j++)
            k[j] = kind switch { "duplicate" => j % 3 == 0 ? 2.5 : -1.0, "signed-zeros" => j % 2 == 0 ? 0.0 : -0.0, _ => 200 * rng.NextDouble() - 100 };
        var tree = new MomentTree(k, TestData.Uniform(m, 1, 3), 0, m, 1, 1, threads: 2);
        var seen = new bool[m];
        for (int j = 0; j < m; j++)
        {
            Assert.False(seen[tree.OriginalIndex(j)]); seen[tree.OriginalIndex(j)] = true;
            // Bit for bit (the keys are decoded from their sort codes): −0 stays −0.
            Assert.Equal(BitConverter.DoubleToInt64Bits(k[tree.OriginalIndex(j)]), BitConverter.DoubleToInt64Bits(tree.Key(j)[0]));
            if (j > 0) Assert.True(tree.Key(j - 1)[0] <= tree.Key(j)[0], $"tree positions {j - 1}, {j} out of order");
        }
        for (int node = 0; node < tree.NodeCount; node++)
        {
            var (lo, hi) = NodeRange(tree, node);
            double mn = double.PositiveInfinity, mx = double.NegativeInfinity;
            for (int j = lo; j < hi; j++) { mn = Math.Min(mn, tree.Key(j)[0]); mx = Math.Max(mx, tree.Key(j)[0]); }
            var (c, w) = tree.AxisBox(node, 0);
            // The box as the tree defines it from the extent (centre the midpoint, half-width the larger distance).
            Assert.True(c == 0.5 * (mn + mx) && w == Math.Max(mx - c, c - mn), $"node {node} [{lo}, {hi}): box {c} ± {w} against [{mn}, {mx}]");
            var (left, right) = tree.Children(node);
            if (left >= 0)
            {
                Assert.Equal(lo, NodeRange(tree, left).Lo); Assert.Equal(hi, NodeRange(tree, right).Hi);
                Assert.Equal(NodeRange(tree, left).Hi, NodeRange(tree, right).Lo);
                Assert.True(tree.Key(NodeRange(tree, left).Hi - 1)[0] <= tree.Key(NodeRange(tree, right).Lo)[0]);
            }
        }
    }
}
