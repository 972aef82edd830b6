using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class SatViaOrthogonalVectorsTests
{
    [Fact]
    public void Agrees_with_brute_force_on_two_hundred_random_3cnf_up_to_twenty_variables()
    {
        int sat = 0, unsat = 0;
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(600 + s);
            // Mostly small; every 25th instance has 17–20 variables. Clause ratios around the 4.26 threshold.
            int v = s % 25 == 24 ? 17 + (s / 25) % 4 : rng.Next(3, 13);
            int clauses = (int)Math.Round(v * (3.0 + 3.0 * rng.NextDouble()));
            var f = ReductionData.Random3Cnf(rng, v, clauses);
            var oracle = ReductionData.Exact();
            var r = SatViaOrthogonalVectors.Solve(f, oracle);
            bool truth = f.BruteForce() is not null;
            Assert.Equal(truth, r.Satisfiable);
            Assert.Equal(1, r.Ov.OracleCalls);
            if (r.Assignment is { } x) Assert.True(f.IsSatisfiedBy(x));
            Assert.Equal(1 << ((v + 1) / 2), r.VectorsA);
            Assert.Equal(1 << (v / 2), r.VectorsB);
            if (truth) sat++; else unsat++;
        }
        Assert.True(sat >= 40 && unsat >= 40, $"sat {sat}, unsat {unsat}");
    }

    [Fact]
    public void LogTwo_route_agrees_on_small_formulas()
    {
        int sat = 0, unsat = 0;
        for (int s = 0; s < 60; s++)
        {
            var rng = new Random(800 + s);
            int v = rng.Next(3, 7), clauses = rng.Next(v * 2, v * 5);
            clauses = Math.Min(clauses, 14);
            var f = ReductionData.Random3Cnf(rng, v, clauses);
            if (s % 3 == 0)
            {
                // Every sign pattern over three variables, one clause dropped at random: unsatisfiable unless dropped.
                int drop = rng.Next(-8, 8);
                var cl = Enumerable.Range(0, 8).Where(p => p != drop).Select(p => new[] { p % 2 == 0 ? 1 : -1, (p >> 1) % 2 == 0 ? 2 : -2, (p >> 2) % 2 == 0 ? 3 : -3 }).ToList();
                cl.AddRange(f.Clauses.Take(4));
                f = new CnfFormula(v, cl);
            }
            var r = SatViaOrthogonalVectors.Solve(f, ReductionData.Exact(), OrthogonalVectorsMethod.LogTwo, seed: s);
            bool truth = f.BruteForce() is not null;
            Assert.Equal(truth, r.Satisfiable);
            if (r.Assignment is { } x) Assert.True(f.IsSatisfiedBy(x));
            if (truth) sat++; else unsat++;
        }
        Assert.True(sat > 0 && unsat > 0, $"sat {sat}, unsat {unsat}");
    }

    [Fact]
    public void Split_and_list_vectors_are_orthogonal_exactly_for_satisfying_pairs()
    {
        var f = DimacsCnf.Parse("p cnf 3 3\n1 -2 0\n2 3 0\n-1 -3 0\n");
        var (a, b, v1) = SatViaOrthogonalVectors.SplitAndList(f);
        Assert.Equal(2, v1);
        for (int i = 0; i < a.Count; i++)
            for (int j = 0; j < b.Count; j++)
            {
                var x = new bool[3];
                for (int v = 0; v < 3; v++) x[v] = v < v1 ? (i >> v & 1) == 1 : (j >> (v - v1) & 1) == 1;
                Assert.Equal(f.IsSatisfiedBy(x), VectorSet.Dot(a[i], b[j]) == 0);
            }
    }

    [Fact]
    public void Edge_formulas()
    {
        Assert.True(SatViaOrthogonalVectors.Solve(DimacsCnf.Parse("p cnf 2 0\n"), ReductionData.Exact()).Satisfiable);
        Assert.False(SatViaOrthogonalVectors.Solve(DimacsCnf.Parse("p cnf 1 2\n1 0\n-1 0\n"), ReductionData.Exact()).Satisfiable);
        Assert.False(SatViaOrthogonalVectors.Solve(DimacsCnf.Parse("p cnf 2 1\n0\n"), ReductionData.Exact()).Satisfiable);
        Assert.True(SatViaOrthogonalVectors.Solve(DimacsCnf.Parse("p cnf 0 0\n"), ReductionData.Exact()).Satisfiable);
        var tautology = SatViaOrthogonalVectors.Solve(DimacsCnf.Parse("p cnf 2 2\n1 -1 0\n-2 0\n"), ReductionData.Exact());
        Assert.True(tautology.Satisfiable);
        Assert.False(tautology.Assignment![1]);
    }

    [Fact]
    public void Too_many_variables_are_rejected()
    {
        var f = new CnfFormula(27, [[1, 2, 3]]);
        Assert.Equal("formula", Assert.Throws<ArgumentException>(() => SatViaOrthogonalVectors.Solve(f, ReductionData.Exact())).ParamName);
    }
}
