using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class QueryOrderTests
{
    /// <summary>The Morton code written the plain way: every coordinate's cell recomputed for every bit.</summary>
    private static long[] ReferenceCodes(double[] q, int n, int d)
    {
        var logNorm = new double[n];
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        for (int i = 0; i < n; i++)
        {
            double s = 0, mx = 0;
            for (int c = 0; c < d; c++) mx = Math.Max(mx, Math.Abs(q[i * d + c]));
            for (int c = 0; c < d && mx > 0; c++) s += q[i * d + c] / mx * (q[i * d + c] / mx);
            logNorm[i] = mx > 0 ? Math.Log2(s * mx * mx) : double.NegativeInfinity;
            if (mx > 0 && !double.IsFinite(logNorm[i])) logNorm[i] = 2 * Math.Log2(mx) + Math.Log2(s); // beyond float64's range
            if (double.IsFinite(logNorm[i])) { lo = Math.Min(lo, logNorm[i]); hi = Math.Max(hi, logNorm[i]); }
        }
        int bits = Math.Min(10, 60 / (d + 1));
        double span = hi > lo ? hi - lo : 1;
        var codes = new long[n];
        for (int i = 0; i < n; i++)
        {
            double mx = 0;
            for (int c = 0; c < d; c++) mx = Math.Max(mx, Math.Abs(q[i * d + c]));
            long normCell = double.IsFinite(logNorm[i]) ? Math.Clamp((long)((logNorm[i] - lo) / span * (1 << bits)), 0, (1 << bits) - 1) : 0;
            long code = 0;
            for (int b = bits - 1; b >= 0; b--)
            {
                for (int c = 0; c < d; c++)
                {
                    double x = mx > 0 ? q[i * d + c] / mx : 0;
                    long cell = Math.Clamp((long)((x + 1) * 0.5 * (1 << bits)), 0, (1 << bits) - 1);
                    code = (code << 1) | ((cell >> b) & 1);
                }
                code = (code << 1) | ((normCell >> b) & 1);
            }
            codes[i] = code;
        }
        return codes;
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    [InlineData(4, 3)]
    [InlineData(9, 4)]
    public void Direction_order_is_a_permutation_sorted_by_the_reference_Morton_code(int d, int seed)
    {
        int n = 3000;
        foreach (bool extreme in new[] { false, true })
        {
            var q = TestData.Uniform(n * d, 50, seed);
            // Adversarial rows: zero queries, duplicates, exact box corners; with extreme, one norm beyond where Σq² is
            // finite and one below where it is nonzero (the order must still be the code's; the norm cells then span
            // ±2000 octaves, so the ordinary queries share one or two of them).
            for (int c = 0; c < d; c++) { q[c] = 0; q[d + c] = q[2 * d + c]; q[5 * d + c] = c % 2 == 0 ? 50 : -50; }
            if (extreme) for (int c = 0; c < d; c++) { q[3 * d + c] = 1e300; q[4 * d + c] = 1e-300; }
            CheckOrder(q, n, d, normsSpread: !extreme);
        }
    }

    private static void CheckOrder(double[] q, int n, int d, bool normsSpread)
    {
        var order = new int[n];
        QueryOrder.ByDirection(q, n, d, order);
        var codes = ReferenceCodes(q, n, d);
        Assert.Equal(Enumerable.Range(0, n), order.Order());
        for (int r = 1; r < n; r++) Assert.True(codes[order[r - 1]] <= codes[order[r]], $"rank {r}: code {codes[order[r]]} follows {codes[order[r - 1]]}");
        // The code really separates directions and norms: not all queries share one (a constant code would also be
        // "sorted"), and the norm's cells are not all equal.
        Assert.True(codes.Distinct().Count() > n / 2);
        int bits = Math.Min(10, 60 / (d + 1));
        long normMask = 0;
        for (int b = 0; b < bits; b++) normMask |= 1L << (b * (d + 1));
        if (normsSpread) Assert.True(codes.Select(c => c & normMask).Distinct().Count() > 16, "the log-norm cells do not spread the queries");
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1000)]
    [InlineData(30, 5000)]
    [InlineData(33, 4097)]
    [InlineData(60, 3000)]
    [InlineData(64, 3000)]
    [InlineData(-64, 3000)]
    [InlineData(-33, 2500)]
    public void Radix_sort_is_a_stable_sort_by_code(int bits, int n)
    {
        var rng = new Random(Math.Abs(bits) * 7919 + n);
        // Few distinct codes at small widths (many ties), the full width otherwise; the top code and zero included.
        // 64 bits: codes as unsigned (the d = 1 keys' order keys, negative as longs). Negative `bits`: the same width with
        // whole digits shared by every code (a constant middle and top), which the sort skips.
        int w = Math.Abs(bits);
        var codes = new long[n];
        for (int i = 0; i < n; i++)
            codes[i] = w == 0 ? 0 : w == 64 ? rng.NextInt64() * 2 + rng.Next(2) : rng.NextInt64(1L << w) >> (i % 3 == 0 ? Math.Max(0, w - 3) : 0);
        if (bits < 0) for (int i = 0; i < n; i++) codes[i] = (codes[i] & 0x3FF) | unchecked((long)0xA5A5_0000_0000_0000UL >> (64 - w) << (64 - w)) | (i % 5 == 0 ? 1L << 20 : 0);
        if (n > 2 && w > 0 && bits > 0) { codes[0] = w == 64 ? -1 : (1L << w) - 1; codes[1] = 0; }
        var items = Enumerable.Range(0, n).ToArray();
        var expected = Enumerable.Range(0, n).OrderBy(i => (ulong)codes[i]).ThenBy(i => i).ToArray(); // stable by construction
        long[] work = (long[])codes.Clone(), codeScratch = new long[n];
        int[] itemScratch = new int[n];
        bool inScratch = QueryOrder.SortByCode(work, items, codeScratch, itemScratch, w);
        Assert.Equal(expected, inScratch ? itemScratch : items);
        Assert.Equal(expected.Select(i => codes[i]).ToArray(), inScratch ? codeScratch : work); // the codes follow the items
        // The pooled form leaves the sorted items in place, whichever buffer the passes ended in.
        var inPlace = Enumerable.Range(0, n).ToArray();
        QueryOrder.SortInPlace((long[])codes.Clone(), inPlace, w);
        Assert.Equal(expected, inPlace);
    }

    [Theory]
    [InlineData(3, 10)]
    [InlineData(4, 10)]
    [InlineData(5, 10)]
    [InlineData(10, 6)]
    public void Interleave_by_bit_deposit_and_by_shifts_agree(int cells, int bits)
    {
        var rng = new Random(cells * 31 + bits);
        var c = new long[cells];
        for (int t = 0; t < 2000; t++)
        {
            for (int i = 0; i < cells; i++) c[i] = t == 0 ? (1L << bits) - 1 : t == 1 ? 0 : rng.NextInt64(1L << bits);
            long expected = 0;
            for (int b = bits - 1; b >= 0; b--) for (int i = 0; i < cells; i++) expected = (expected << 1) | ((c[i] >> b) & 1);
            Assert.Equal(expected, QueryOrder.Interleave(c, bits, deposit: false));
            Assert.Equal(expected, QueryOrder.Interleave(c, bits, deposit: true));
        }
    }

    [Fact]
    public void Order_keys_decode_to_the_same_bits()
    {
        // The d = 1 tree decodes its sorted keys from their sorted codes: every double, −0, subnormals and the extremes
        // included, must come back bit for bit.
        var rng = new Random(5);
        var x = new List<double> { double.NegativeInfinity, -double.MaxValue, -double.Epsilon, -0.0, 0.0, double.Epsilon, 2.2250738585072014E-308, double.MaxValue, double.PositiveInfinity };
        for (int i = 0; i < 5000; i++) x.Add(BitConverter.Int64BitsToDouble(rng.NextInt64(long.MinValue, long.MaxValue)) is var v && double.IsFinite(v) ? v : i);
        foreach (double v in x)
            Assert.Equal(BitConverter.DoubleToInt64Bits(v), BitConverter.DoubleToInt64Bits(QueryOrder.FromOrderKey(QueryOrder.OrderKey(v))));
    }

    [Fact]
    public void Order_keys_order_doubles_as_their_values()
    {
        double[] x = [double.NegativeInfinity, -double.MaxValue, -1e300, -3.5, -1, -double.Epsilon, -0.0, 0.0, double.Epsilon, 1e-300, 1, 1 + 2.2e-16, 7, 1e300, double.MaxValue, double.PositiveInfinity];
        for (int i = 0; i + 1 < x.Length; i++)
            Assert.True(QueryOrder.OrderKey(x[i]) < QueryOrder.OrderKey(x[i + 1]), $"key({x[i]:R}) ≥ key({x[i + 1]:R})");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(70000)]
    public void Sorted_queries_are_a_permutation_in_ascending_order(int n)
    {
        var rng = new Random(n);
        var q = new double[n];
        for (int i = 0; i < n; i++)
            q[i] = (i % 7) switch { 0 => 0.0, 1 => -0.0, 2 => 1e200 * (rng.NextDouble() - 0.5), 3 => q[Math.Max(0, i - 3)], _ => 200 * rng.NextDouble() - 100 };
        var order = new int[n];
        QueryOrder.Sorted(q, order);
        var seen = new bool[n];
        foreach (int i in order) { Assert.False(seen[i], $"query {i} twice"); seen[i] = true; }
        for (int t = 0; t + 1 < n; t++)
        {
            // Ascending in the value to 32 key bits (values that share them may come in either order, ties in query order).
            ulong a = QueryOrder.OrderKey(q[order[t]]) >> 32, b = QueryOrder.OrderKey(q[order[t + 1]]) >> 32;
            Assert.True(a < b || a == b && order[t] < order[t + 1], $"positions {t}, {t + 1}: q = {q[order[t]]:R}, {q[order[t + 1]]:R}");
        }
    }

    [Theory]
    [InlineData(1, 0)] [InlineData(1000, 3)] [InlineData(1025, 10)] [InlineData(4096, 10)] [InlineData(5000, 12)]
    public void Position_blocks_keep_the_order_within_each_block(int n, int blockLog)
    {
        var rng = new Random(n + blockLog);
        var order = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
        var blocked = (int[])order.Clone();
        QueryOrder.InPositionBlocks(blocked, blockLog);
        Assert.Equal(Enumerable.Range(0, n), blocked.OrderBy(x => x)); // a permutation
        for (int r = 1; r < n; r++) Assert.True(blocked[r - 1] >> blockLog <= blocked[r] >> blockLog, $"block order broken at {r}");
        // Within a block, the given order: positions of one block appear in blocked as they did in order.
        var rank = new int[n];
        for (int r = 0; r < n; r++) rank[order[r]] = r;
        for (int r = 1; r < n; r++)
            if (blocked[r - 1] >> blockLog == blocked[r] >> blockLog) Assert.True(rank[blocked[r - 1]] < rank[blocked[r]], $"order within block broken at {r}");
    }
}
