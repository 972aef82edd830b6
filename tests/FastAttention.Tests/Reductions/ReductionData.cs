using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

/// <summary>Seeded small instances with planted answers, and brute-force ground truth.</summary>
internal static class ReductionData
{
    public static AttentionOracle Exact() => AttentionOracle.Create("exact", threads: 1);

    public static VectorSet Binary(Random rng, int count, int d, double density, string name)
    {
        var data = new double[count * d];
        for (int i = 0; i < data.Length; i++) data[i] = rng.NextDouble() < density ? 1 : 0;
        return new VectorSet(data, count, d, name);
    }

    /// <summary>A, B ⊂ {0,1}^d; when <paramref name="plant"/>, some pair is made orthogonal.</summary>
    public static (VectorSet A, VectorSet B) OvInstance(int seed, bool plant, int maxN = 12, int maxD = 10)
    {
        var rng = new Random(seed);
        int n = rng.Next(1, maxN + 1), m = rng.Next(1, maxN + 1), d = rng.Next(1, maxD + 1);
        var a = Binary(rng, n, d, 0.7, "A");
        var b = Binary(rng, m, d, 0.7, "B");
        for (int i = 0; i < n; i++) if (VectorSet.Dot(a[i], a[i]) == 0) a.Data[i * d + rng.Next(d)] = 1;
        if (plant)
        {
            int i = rng.Next(n), j = rng.Next(m);
            for (int l = 0; l < d; l++) if (a.Data[i * d + l] == 1) b.Data[j * d + l] = 0;
        }
        return (a, b);
    }

    public static bool HasOrthogonalPair(VectorSet a, VectorSet b)
    {
        for (int i = 0; i < a.Count; i++)
            for (int j = 0; j < b.Count; j++)
                if (VectorSet.Dot(a[i], b[j]) == 0) return true;
        return false;
    }

    /// <summary>A random 3-CNF with the given variables and clauses (distinct variables per clause when v ≥ 3).</summary>
    public static CnfFormula Random3Cnf(Random rng, int variables, int clauses)
    {
        var list = new List<int[]>();
        for (int c = 0; c < clauses; c++)
        {
            int width = Math.Min(3, variables);
            var vars = new HashSet<int>();
            while (vars.Count < width) vars.Add(rng.Next(1, variables + 1));
            list.Add(vars.Select(v => rng.Next(2) == 0 ? v : -v).ToArray());
        }
        return new CnfFormula(variables, list);
    }

    public static string ToDimacs(CnfFormula f) =>
        $"c random\np cnf {f.Variables} {f.Clauses.Count}\n" + string.Concat(f.Clauses.Select(c => string.Join(' ', c) + " 0\n"));
}
