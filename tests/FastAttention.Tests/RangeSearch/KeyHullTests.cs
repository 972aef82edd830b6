using FastAttention.RangeSearch;

namespace FastAttention.Tests.RangeSearch;

public class KeyHullTests
{
    private const double U = 1.1102230246251565e-16;

    /// <summary>2-D key sets: the tree families, and sets built against a floating-point hull — many keys exactly on the
    /// edges of a square (collinear with its corners), a grid (ties in every sort), a needle triangle, coordinates at
    /// 1e±90 (squares still normal) and 1e±200 (not: no hull), and a disc (hundreds of near-hull keys).</summary>
    private static double[] Keys(string kind, int m, int seed)
    {
        if (kind is "uniform" or "duplicates" or "strip" or "segments" or "line" or "equal" or "sphere")
            return MomentTreeTests.Keys(kind, m, 2, seed, 100);
        var rng = new Random(seed);
        var k = new double[2 * m];
        for (int j = 0; j < m; j++)
        {
            double x, y;
            switch (kind)
            {
                case "square-edges":
                    {
                        double t = Math.Round(rng.NextDouble() * 64) / 32 - 1; // dyadic: exactly on the edge
                        int side = j % 5;
                        (x, y) = side switch { 0 => (t, -1.0), 1 => (1.0, t), 2 => (t, 1.0), 3 => (-1.0, t), _ => (0.9 * (2 * rng.NextDouble() - 1), 0.9 * (2 * rng.NextDouble() - 1)) };
                        break;
                    }
                case "grid": x = j % 40 - 20; y = j / 40 % 40 - 20; break;
                case "needle":
                    {
                        double a = rng.NextDouble(), b = rng.NextDouble() * (1 - a);
                        (x, y) = (a * 100 + b * 100, b * 1e-3); // a triangle (0,0), (100,0), (100,1e-3)
                        break;
                    }
                case "huge": x = (2 * rng.NextDouble() - 1) * 1e90; y = (2 * rng.NextDouble() - 1) * 1e90; break;
                case "tiny": x = (2 * rng.NextDouble() - 1) * 1e-90; y = (2 * rng.NextDouble() - 1) * 1e-90; break;
                case "beyond": x = (2 * rng.NextDouble() - 1) * 1e200; y = (2 * rng.NextDouble() - 1) * 1e200; break;
                case "below": x = (2 * rng.NextDouble() - 1) * 1e-200; y = (2 * rng.NextDouble() - 1) * 1e-200; break;
                default: // disc
                    {
                        double r = Math.Sqrt(rng.NextDouble()), th = 2 * Math.PI * rng.NextDouble();
                        (x, y) = (r * Math.Cos(th), r * Math.Sin(th));
                        break;
                    }
            }
            k[2 * j] = x; k[2 * j + 1] = y;
        }
        return k;
    }

    public static TheoryData<string> Kinds() => new()
    {
        "uniform", "duplicates", "strip", "segments", "square-edges", "grid", "needle", "huge", "tiny", "disc",
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void The_hull_bounds_every_key_in_every_direction(string kind)
    {
        int m = 3000;
        var k = Keys(kind, m, 17);
        var tree = new MomentTree(k, new double[m], 0, m, 2, 1);
        var hull = tree.Hull;
        if (kind is "uniform" or "square-edges" or "grid" or "huge" or "tiny")
            Assert.NotNull(hull); // the path is exercised where a few dozen vertices span the set
        if (hull is null) return;
        Assert.InRange(hull.X.Length, 3, KeyHull.MaximumVertices);
        for (int t = 0; t < hull.X.Length; t++)
        {
            var key = tree.Key(hull.Positions[t]);
            Assert.True(key[0] == hull.X[t] && key[1] == hull.Y[t], "a vertex is not the key it names");
        }
        double scale = k.Max(Math.Abs);
        Assert.True(hull.Reach <= 1e-9 * scale, $"reach {hull.Reach:G3} against coordinates of {scale:G3}");
        var rng = new Random(18);
        var dirs = new List<(double, double)> { (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (1, -1) };
        // Directions exactly normal to each hull edge (ties along a whole edge) and random ones.
        for (int t = 0; t < hull.X.Length; t++)
        {
            int n = (t + 1) % hull.X.Length;
            dirs.Add((hull.Y[n] - hull.Y[t], hull.X[t] - hull.X[n]));
        }
        for (int i = 0; i < 300; i++) dirs.Add((2 * rng.NextDouble() - 1, 2 * rng.NextDouble() - 1));
        foreach (var (a0, a1) in dirs)
        {
            var a = new[] { a0, a1 };
            double truth = double.NegativeInfinity, mag = 0;
            for (int j = 0; j < m; j++)
            {
                truth = Math.Max(truth, a0 * k[2 * j] + a1 * k[2 * j + 1]);
                mag = Math.Max(mag, Math.Abs(a0 * k[2 * j]) + Math.Abs(a1 * k[2 * j + 1]));
            }
            double found = hull.Max(a, out _), norm = Math.Sqrt(a0 * a0 + a1 * a1);
            double rounding = 4 * U * mag;
            Assert.True(truth <= found + norm * hull.Reach + rounding, $"{kind}: max {truth:R} beyond the hull's {found:R} + reach {norm * hull.Reach:G3}");
            Assert.True(found <= truth + rounding, $"{kind}: the hull's {found:R} exceeds the true max {truth:R}");
        }
    }

    [Theory]
    [InlineData("line")]
    [InlineData("equal")]
    [InlineData("sphere")]
    [InlineData("beyond")]
    [InlineData("below")]
    public void No_hull_where_it_cannot_answer(string kind)
    {
        // Collinear keys (two vertices), all keys equal (one), keys on an arc (every key a vertex: > 64), and coordinates
        // whose squares overflow or leave the normal range (the rounding bounds are relative).
        int m = 3000;
        var tree = new MomentTree(Keys(kind, m, 3), new double[m], 0, m, 2, 1);
        Assert.Null(tree.Hull);
        var small = new MomentTree(Keys("uniform", KeyHull.MinimumKeys - 1, 3), new double[KeyHull.MinimumKeys - 1], 0, KeyHull.MinimumKeys - 1, 2, 1);
        Assert.Null(small.Hull);
    }

    [Fact]
    public void The_maximum_search_answers_from_the_hull_in_one_step()
    {
        int m = 20000;
        var k = Keys("uniform", m, 5);
        var tree = new MomentTree(k, new double[m], 0, m, 2, 1);
        Assert.NotNull(tree.Hull);
        var sc = tree.CreateScratch();
        var rng = new Random(6);
        var q = new double[2];
        long nodes = 0;
        for (int trial = 0; trial < 200; trial++)
        {
            q[0] = (2 * rng.NextDouble() - 1) * 100; q[1] = (2 * rng.NextDouble() - 1) * 100;
            sc.SetQuery(q, 1);
            var st = new QueryStats();
            double best = double.NegativeInfinity, truth = double.NegativeInfinity; int key = -1;
            tree.MaxSearch(sc, 0.5, ref best, ref key, st);
            for (int j = 0; j < m; j++) truth = Math.Max(truth, q[0] * k[2 * j] + q[1] * k[2 * j + 1]);
            Assert.True(best >= truth - 0.5 && best <= truth + 1e-9 * Math.Abs(truth), $"found {best} against max {truth}");
            var kb = tree.Key(key);
            Assert.Equal(best, q[0] * kb[0] + q[1] * kb[1]); // a real key's logit
            nodes += st.MaxSearchNodes;
        }
        Assert.True(nodes <= 200, $"{nodes} nodes in 200 searches: the hull was not used"); // the root only
    }

    [Theory]
    [InlineData("uniform")]
    [InlineData("duplicates")]
    [InlineData("equal")]
    public void In_one_dimension_the_maximum_is_an_extreme_key_in_one_step(string kind)
    {
        int m = 5000;
        var k = MomentTreeTests.Keys(kind, m, 1, 21, 1000);
        var tree = new MomentTree(k, new double[m], 0, m, 1, 1);
        var sc = tree.CreateScratch();
        var rng = new Random(22);
        foreach (double q in new[] { 0.0, -0.0, 1, -1, 1e-300, -1e300 / 1e10 }.Concat(Enumerable.Range(0, 100).Select(_ => (2 * rng.NextDouble() - 1) * 50)))
        {
            sc.SetQuery([q], 1);
            var st = new QueryStats();
            double best = double.NegativeInfinity; int key = -1;
            tree.MaxSearch(sc, 0.5, ref best, ref key, st);
            double truth = k.Max(x => q * x);
            Assert.Equal(truth, best); // one product each: the same rounding
            Assert.Equal(best, q * tree.Key(key)[0]);
            Assert.Equal(1, st.MaxSearchNodes);
        }
    }
}
