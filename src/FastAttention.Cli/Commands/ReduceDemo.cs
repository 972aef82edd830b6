using FastAttention.Reductions;
using Spectre.Console;

namespace FastAttention.Cli.Commands;

/// <summary>The demo's hardness section: a planted orthogonal-vectors instance and a random 3-SAT formula, solved
/// through the exact attention oracle.</summary>
internal static class ReduceDemo
{
    private static int _registered;

    /// <summary>Adds the section to <see cref="DemoCommand.Sections"/> once per process.</summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
            DemoCommand.Sections.Add(("Hardness made executable: problems believed to need quadratic time, solved through attention", Run));
    }

    private static void Run(IAnsiConsole console, bool quick)
    {
        var table = new Table().AddColumns("problem", "instance", "answer", "re-checked", "oracle calls", "oracle instance (n′, d′, B′, ε′)");
        int n = quick ? 64 : 256, d = 24;
        var rng = new Random(2024);
        var a = new double[n * d]; var b = new double[n * d];
        for (int i = 0; i < a.Length; i++) { a[i] = rng.NextDouble() < 0.6 ? 1 : 0; b[i] = rng.NextDouble() < 0.6 ? 1 : 0; }
        for (int i = 0; i < n; i++) a[i * d + i % d] = 1; // no zero vectors
        int pi = n / 3, pj = n / 2;
        for (int l = 0; l < d; l++) if (a[pi * d + l] == 1) b[pj * d + l] = 0; // the planted orthogonal pair
        var va = new VectorSet(a, n, d, "A"); var vb = new VectorSet(b, n, d, "B");
        var oracle = AttentionOracle.Create("exact");
        var ov = OrthogonalVectorsLargeD.Solve(va, vb, oracle);
        string witness = ov.Pair is { } p ? $"a_{p.I}·b_{p.J} = 0" : "no pair";
        bool ok = ov.Pair is { } q && VectorSet.Dot(va[q.I], vb[q.J]) == 0;
        table.AddRow("orthogonal vectors (Lemma C.6)", $"n = m = {n}, d = {d}, planted pair", witness, ok ? "yes" : "NO", ov.OracleCalls.ToString(), Describe(ov.Instance));

        int vars = quick ? 12 : 16, clauses = (int)(vars * 4.0);
        var list = new List<int[]>();
        for (int c = 0; c < clauses; c++)
        {
            var set = new HashSet<int>();
            while (set.Count < 3) set.Add(rng.Next(1, vars + 1));
            list.Add(set.Select(v => rng.Next(2) == 0 ? v : -v).ToArray());
        }
        var f = new CnfFormula(vars, list);
        var satOracle = AttentionOracle.Create("exact");
        var sat = SatViaOrthogonalVectors.Solve(f, satOracle);
        string answer = sat.Assignment is { } x ? "satisfiable: " + string.Concat(x.Select(v => v ? '1' : '0')) : "unsatisfiable";
        string check = sat.Assignment is { } y ? (f.IsSatisfiedBy(y) ? "yes" : "NO") : (f.BruteForce() is null ? "yes (brute force)" : "NO");
        table.AddRow("3-SAT → OV (split-and-list)", $"{vars} variables, {clauses} clauses → {sat.VectorsA}×{sat.VectorsB} vectors", answer, check, sat.Ov.OracleCalls.ToString(), Describe(sat.Ov.Instance));
        console.Write(table);
    }

    private static string Describe(ReductionInstance? i) => i is null ? "-" : $"{i.N}, {i.D}, {i.Bound:G3}, {i.Epsilon:G3}";
}
