using System.CommandLine;
using System.Globalization;
using FastAttention.Cli.Infrastructure;
using FastAttention.IO;
using FastAttention.Reductions;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn reduce rowsums|maxip|ov|ann|sat</c>: the papers' hardness reductions run as solvers, with an attention
/// algorithm as the oracle. Each prints the answer, a witness re-checked directly, the oracle calls and the instance
/// (n′, d′, B′, ε′); <c>--json</c> prints one object. Small instances are also cross-checked by brute force.
/// </summary>
internal static class ReduceCommand
{
    /// <summary>Brute-force cross-checks run when n·m·d is at most this (and 2^v for SAT at most 2^24).</summary>
    private const double BruteForceLimit = 1e8;

    public static Command Create()
    {
        ReduceDemo.Register();
        var cmd = new Command("reduce", "Solve nearest neighbour, Max-IP, orthogonal vectors and SAT through an attention oracle (the papers' lower-bound reductions).");
        cmd.Subcommands.Add(RowSums());
        cmd.Subcommands.Add(MaxIp());
        cmd.Subcommands.Add(Ov());
        cmd.Subcommands.Add(Ann());
        cmd.Subcommands.Add(Sat());
        return cmd;
    }

    private sealed record Common(Option<string> Oracle, Option<bool> Json, Option<int> Threads);

    private static Common AddCommon(Command cmd)
    {
        var c = new Common(
            new Option<string>("--oracle") { Description = "Attention algorithm used as the oracle: " + string.Join(", ", AttentionAlgorithms.Names), DefaultValueFactory = _ => "exact" },
            new Option<bool>("--json") { Description = "Print one JSON object {problem, answer, witness, oracle, oracleCalls, instance}." },
            CommonOptions.Threads());
        cmd.Options.Add(c.Oracle); cmd.Options.Add(c.Json); cmd.Options.Add(c.Threads);
        return c;
    }

    private static AttentionOracle Oracle(ParseResult r, Common c)
    {
        int t = r.GetValue(c.Threads);
        t = CommonOptions.ThreadCount(t);
        string name = r.GetValue(c.Oracle)!;
        if (!AttentionAlgorithms.Names.Contains(name, StringComparer.OrdinalIgnoreCase))
            throw new UsageException($"--oracle: unknown algorithm '{name}'; known: {string.Join(", ", AttentionAlgorithms.Names)}.");
        return AttentionOracle.Create(name, t);
    }

    private static Option<string> File(string name, string description) => new(name) { Description = description, Required = true };

    private static Command RowSums()
    {
        var q = File("--q", "Q .npy [n, d] (float or integer).");
        var k = File("--k", "K .npy [m, d].");
        var eps = new Option<double>("--epsilon") { Description = "Multiplicative accuracy ε in (0, 1].", DefaultValueFactory = _ => 0.01 };
        var cmd = new Command("rowsums", "Every row sum of exp(QKᵀ) within (1 ± ε) by parallel binary search (Gupta et al. Lemma C.1, Claim C.2).") { q, k, eps };
        var c = AddCommon(cmd);
        cmd.SetAction(r =>
        {
            double e = r.GetValue(eps);
            if (!(e > 0 && e <= 1)) throw new UsageException($"--epsilon must be in (0, 1] (got {e}).");
            var qs = Load(r.GetValue(q)!, "--q", "Q"); var ks = Load(r.GetValue(k)!, "--k", "K");
            if (qs.Dimension != ks.Dimension) throw new UsageException($"--q has d = {qs.Dimension} but --k has d = {ks.Dimension}; they must agree.");
            var oracle = Oracle(r, c);
            var res = RowSumsViaAttention.Estimate(qs, ks, e, oracle);
            string check = "skipped (instance too large)";
            if ((double)qs.Count * ks.Count * qs.Dimension <= BruteForceLimit)
            {
                for (int i = 0; i < qs.Count; i++)
                {
                    double truth = LogSumExp(qs, ks, i);
                    if (!(Math.Abs(res.LogEstimates[i] - truth) <= Math.Log(1 + e) * (1 + 1e-9)))
                        throw new InvalidOperationException($"row {i}: ln Ŝ = {res.LogEstimates[i]} but ln S = {truth}; the certified estimate is wrong.");
                }
                check = "brute force agrees (every row within 1 ± ε)";
            }
            var text = new List<string> { $"row sums of exp(QKᵀ) within 1 ± {F(e)} (Lemma C.1 + Claim C.2), {res.Rounds} binary-search rounds" };
            for (int i = 0; i < Math.Min(qs.Count, 20); i++) text.Add($"  S_{i} ≈ {F(res.Estimates[i])}  (ln = {F(res.LogEstimates[i])})");
            if (qs.Count > 20) text.Add($"  … {qs.Count - 20} more rows (use --json)");
            return Emit(r, c, oracle, res.Instance, check, text, h => Reports.Json(new RowSumsReport("rowsums", res.Estimates, null,
                h.Oracle, h.OracleCalls, h.Instance, h.Check, res.LogEstimates, res.Rounds), ReportJson.Default.RowSumsReport));
        });
        return cmd;
    }

    private static Command MaxIp()
    {
        var a = File("--a", "A .npy [n, d], integer entries.");
        var b = File("--b", "B .npy [m, d], integer entries.");
        var cmd = new Command("maxip", "max_j a_i·b_j exactly for every i (Gupta et al. Lemma C.3).") { a, b };
        var c = AddCommon(cmd);
        cmd.SetAction(r =>
        {
            var (sa, sb) = Pair(r.GetValue(a)!, r.GetValue(b)!);
            ExitCodes.Validate("--a", () => sa.RequireIntegers(MaxIpViaAttention.MaxEntry));
            ExitCodes.Validate("--b", () => sb.RequireIntegers(MaxIpViaAttention.MaxEntry));
            var oracle = Oracle(r, c);
            var res = MaxIpViaAttention.Solve(sa, sb, oracle);
            string check = "skipped (instance too large)";
            if ((double)sa.Count * sb.Count * sa.Dimension <= BruteForceLimit)
            {
                for (int i = 0; i < sa.Count; i++)
                {
                    double best = double.NegativeInfinity;
                    for (int j = 0; j < sb.Count; j++) best = Math.Max(best, VectorSet.Dot(sa[i], sb[j]));
                    if (best != res.Maxima[i]) throw new InvalidOperationException($"row {i}: recovered {res.Maxima[i]} but the maximum is {best}; the certified answer is wrong.");
                }
                check = "brute force agrees";
            }
            var text = new List<string> { $"Max-IP (Lemma C.3) with K = λ·B, λ = {F(res.Lambda)}" };
            for (int i = 0; i < Math.Min(sa.Count, 20); i++) text.Add($"  max_j a_{i}·b_j = {res.Maxima[i]}");
            if (sa.Count > 20) text.Add($"  … {sa.Count - 20} more rows (use --json)");
            return Emit(r, c, oracle, res.Instance, check, text, h => Reports.Json(new MaxIpReport("maxip", res.Maxima, null,
                h.Oracle, h.OracleCalls, h.Instance, h.Check, res.Lambda), ReportJson.Default.MaxIpReport));
        });
        return cmd;
    }

    private static Command Ov()
    {
        var a = File("--a", "A .npy [n, d], 0/1 entries.");
        var b = File("--b", "B .npy [m, d], 0/1 entries.");
        var method = new Option<string>("--method") { Description = "large-d (Lemma C.6, one call) or log-two (Lemma C.8, exact row sums and sampling).", DefaultValueFactory = _ => "large-d" };
        var oracleEps = new Option<double>("--oracle-epsilon") { Description = "large-d: the oracle error η < 1/2 the instance is built for.", DefaultValueFactory = _ => OrthogonalVectorsLargeD.DefaultOracleEpsilon };
        var seed = new Option<int>("--seed") { Description = "log-two: sampling seed.", DefaultValueFactory = _ => 1 };
        var samples = new Option<int>("--samples") { Description = "log-two: sampling rounds (a 'yes' is missed with probability ≤ 2^-samples).", DefaultValueFactory = _ => OrthogonalVectorsLogTwo.DefaultSamples };
        var cmd = new Command("ov", "Orthogonal vectors: is some a_i·b_j = 0? (Gupta et al. Lemmas C.6, C.8)") { a, b, method, oracleEps, seed, samples };
        var c = AddCommon(cmd);
        cmd.SetAction(r =>
        {
            var (sa, sb) = Binary(r.GetValue(a)!, r.GetValue(b)!);
            var m = ParseMethod(r.GetValue(method)!, "--method");
            double eta = r.GetValue(oracleEps);
            if (!(eta > 0 && eta < 0.5)) throw new UsageException($"--oracle-epsilon must be in (0, 0.5) (got {eta}).");
            int s = r.GetValue(samples);
            if (s < 1 || s > 1000) throw new UsageException($"--samples must be in [1, 1000] (got {s}).");
            var oracle = Oracle(r, c);
            var res = m == OrthogonalVectorsMethod.LargeD
                ? OrthogonalVectorsLargeD.Solve(sa, sb, oracle, eta)
                : OrthogonalVectorsLogTwo.Solve(sa, sb, oracle, r.GetValue(seed), s);
            string check = CheckOv(sa, sb, res);
            var text = new List<string>
            {
                m == OrthogonalVectorsMethod.LargeD ? "orthogonal vectors, Lemma C.6 (one call, ln k scaling)" : $"orthogonal vectors, Lemma C.8 (entries √ln 2, exact row sums; sampling rounds used: {res.Samples})",
                res.Pair is { } p ? $"answer: yes — a_{p.I}·b_{p.J} = 0" : $"answer: no orthogonal pair{(res.FailureProbability > 0 ? $" (wrong with probability ≤ {F(res.FailureProbability)})" : "")}",
            };
            return Emit(r, c, oracle, res.Instance, check, text, h => Reports.Json(new OrthogonalVectorsReport("ov", res.Found,
                res.Pair is { } w ? [w.I, w.J] : null, h.Oracle, h.OracleCalls, h.Instance, h.Check,
                m == OrthogonalVectorsMethod.LargeD ? "large-d" : "log-two", res.Samples, res.FailureProbability), ReportJson.Default.OrthogonalVectorsReport));
        });
        return cmd;
    }

    private static Command Ann()
    {
        var a = File("--a", "A .npy [n, d], 0/1 entries.");
        var b = File("--b", "B .npy [m, d], 0/1 entries.");
        var eps = new Option<double>("--epsilon") { Description = "Approximation: the pair is within (1 + ε) of the nearest Hamming distance.", DefaultValueFactory = _ => 1.0 };
        var cmd = new Command("ann", "(1 + ε)-approximate Hamming nearest neighbour by binary search over Gap-ANN (Alman–Song Lemma 4.7).") { a, b, eps };
        var c = AddCommon(cmd);
        cmd.SetAction(r =>
        {
            double e = r.GetValue(eps);
            CommonOptions.Positive("--epsilon", e);
            var (sa, sb) = Binary(r.GetValue(a)!, r.GetValue(b)!);
            if (sa.Dimension < 1) throw new UsageException("--a, --b: the vectors need dimension at least 1.");
            var oracle = Oracle(r, c);
            var res = new GapNearestNeighbour(sa, sb, oracle).Solve(e);
            int direct = VectorSet.Hamming(sa[res.I], sb[res.J]);
            if (direct != res.Distance) throw new InvalidOperationException($"the pair's distance is {direct}, not {res.Distance}.");
            string check = $"witness distance {direct} recomputed";
            if ((double)sa.Count * sb.Count * sa.Dimension <= BruteForceLimit)
            {
                int best = int.MaxValue;
                for (int i = 0; i < sa.Count; i++)
                    for (int j = 0; j < sb.Count; j++) best = Math.Min(best, VectorSet.Hamming(sa[i], sb[j]));
                if (!(direct <= (1 + e) * best) || res.LowerBound > best)
                    throw new InvalidOperationException($"distance {direct} vs nearest {best} (certified lower bound {res.LowerBound}); the certified answer is wrong.");
                check += $"; brute force agrees (nearest distance {best})";
            }
            var text = new List<string>
            {
                $"(1 + {F(e)})-ANN by binary search over Gap-ANN: {res.GapCalls} Gap-ANN instances ({res.BruteForceCalls} by the brute-force branch)",
                $"answer: a_{res.I}, b_{res.J} at Hamming distance {res.Distance} (nearest ≥ {res.LowerBound})",
            };
            return Emit(r, c, oracle, res.Instance, check, text, h => Reports.Json(new NearestNeighbourReport("ann", [res.I, res.J], [res.I, res.J],
                h.Oracle, h.OracleCalls, h.Instance, h.Check, res.Distance, res.LowerBound, res.GapCalls, res.BruteForceCalls), ReportJson.Default.NearestNeighbourReport));
        });
        return cmd;
    }

    private static Command Sat()
    {
        var cnf = File("--cnf", "Formula in DIMACS CNF format.");
        var via = new Option<string>("--via") { Description = "large-d (Lemma C.6) or log-two (Lemma C.8).", DefaultValueFactory = _ => "large-d" };
        var seed = new Option<int>("--seed") { Description = "log-two: sampling seed.", DefaultValueFactory = _ => 1 };
        var cmd = new Command("sat", "CNF-SAT → orthogonal vectors (split-and-list, Williams 2004) → attention; a satisfying assignment from the witness.") { cnf, via, seed };
        var c = AddCommon(cmd);
        cmd.SetAction(r =>
        {
            string path = r.GetValue(cnf)!;
            AttentionFiles.CheckFile(path, "--cnf");
            CnfFormula f;
            try { f = ExitCodes.Validate("--cnf", () => DimacsCnf.Read(path)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            { throw new UsageException($"--cnf: cannot read '{path}' ({ExitCodes.OneLine(e.Message)})."); }
            if (f.Variables > SatViaOrthogonalVectors.MaxVariables)
                throw new UsageException($"--cnf: {path} has {f.Variables} variables; split-and-list builds 2^⌈v/2⌉ vectors per side, so at most {SatViaOrthogonalVectors.MaxVariables} are supported.");
            var m = ParseMethod(r.GetValue(via)!, "--via");
            var oracle = Oracle(r, c);
            var res = SatViaOrthogonalVectors.Solve(f, oracle, m, r.GetValue(seed));
            string check;
            if (res.Assignment is { } x)
            {
                if (!f.IsSatisfiedBy(x)) throw new InvalidOperationException("the recovered assignment does not satisfy the formula.");
                check = "assignment satisfies every clause";
            }
            else if (f.Variables <= 24 && (double)(1L << f.Variables) * Math.Max(1, f.Clauses.Count) <= 4 * BruteForceLimit)
            {
                if (f.BruteForce() is not null) throw new InvalidOperationException("brute force finds a satisfying assignment; the answer is wrong.");
                check = "brute force agrees (unsatisfiable)";
            }
            else check = "skipped (too many variables for brute force)";
            var text = new List<string>
            {
                $"SAT → OV by split-and-list: {f.Variables} variables, {f.Clauses.Count} clauses → |A| = {res.VectorsA}, |B| = {res.VectorsB}, d = {f.Clauses.Count}",
                res.Assignment is { } y ? "answer: satisfiable — " + string.Join(' ', y.Select((v, i) => v ? $"{i + 1}" : $"-{i + 1}")) : $"answer: unsatisfiable{(res.Ov.FailureProbability > 0 ? $" (wrong with probability ≤ {F(res.Ov.FailureProbability)})" : "")}",
            };
            return Emit(r, c, oracle, res.Ov.Instance, check, text, h => Reports.Json(new SatReport("sat", res.Satisfiable, res.Assignment?.Select(v => v ? 1 : 0).ToArray(),
                h.Oracle, h.OracleCalls, h.Instance, h.Check, f.Variables, f.Clauses.Count, res.VectorsA, res.VectorsB,
                m == OrthogonalVectorsMethod.LargeD ? "large-d" : "log-two", res.Ov.FailureProbability), ReportJson.Default.SatReport));
        });
        return cmd;
    }

    private static string CheckOv(VectorSet a, VectorSet b, OrthogonalVectorsResult res)
    {
        if (res.Pair is { } p)
        {
            if (VectorSet.Dot(a[p.I], b[p.J]) != 0) throw new InvalidOperationException($"the witness a_{p.I}·b_{p.J} is not 0.");
            return $"witness a_{p.I}·b_{p.J} = 0 recomputed";
        }
        if ((double)a.Count * b.Count * a.Dimension > BruteForceLimit) return "skipped (instance too large)";
        for (int i = 0; i < a.Count; i++)
            for (int j = 0; j < b.Count; j++)
                if (VectorSet.Dot(a[i], b[j]) == 0) throw new InvalidOperationException($"brute force finds a_{i}·b_{j} = 0; the answer is wrong.");
        return "brute force agrees (no orthogonal pair)";
    }

    private static int Emit(ParseResult r, Common c, AttentionOracle oracle, ReductionInstance? inst, string check, List<string> text,
        Func<ReduceHeader, string> json)
    {
        var output = r.InvocationConfiguration.Output;
        if (r.GetValue(c.Json))
        {
            output.WriteLine(json(new ReduceHeader(oracle.Name, oracle.Calls, ReductionInstanceReport.Of(inst), check)));
            return 0;
        }
        foreach (var line in text) output.WriteLine(line);
        output.WriteLine($"oracle: {oracle.Name}, {oracle.Calls} call{(oracle.Calls == 1 ? "" : "s")}");
        output.WriteLine(inst is null ? "instance: none (answered without the oracle)"
            : $"instance: n′ = {inst.N} queries × {inst.Keys} keys, d′ = {inst.D}, B′ = {F(inst.Bound)}, ε′ = {F(inst.Epsilon)}");
        output.WriteLine($"check: {check}");
        return 0;
    }

    private static OrthogonalVectorsMethod ParseMethod(string s, string option) => s switch
    {
        "large-d" => OrthogonalVectorsMethod.LargeD,
        "log-two" => OrthogonalVectorsMethod.LogTwo,
        _ => throw new UsageException($"{option} must be large-d or log-two (got '{s}')."),
    };

    /// <summary>A pair of 0/1 vector sets of equal dimension.</summary>
    private static (VectorSet A, VectorSet B) Binary(string a, string b)
    {
        var (sa, sb) = Pair(a, b);
        ExitCodes.Validate("--a", sa.RequireBinary);
        ExitCodes.Validate("--b", sb.RequireBinary);
        return (sa, sb);
    }

    private static (VectorSet A, VectorSet B) Pair(string a, string b)
    {
        var sa = Load(a, "--a", "A"); var sb = Load(b, "--b", "B");
        if (sa.Dimension != sb.Dimension) throw new UsageException($"--a has d = {sa.Dimension} but --b has d = {sb.Dimension}; they must agree.");
        return (sa, sb);
    }

    private static VectorSet Load(string path, string option, string name)
    {
        var arr = AttentionFiles.Read(path, option);
        if (arr.Shape.Count != 2) throw new UsageException($"{option}: {path} must be 2-D [count, d] (got {arr.Shape.Count}-D).");
        if (arr.Shape[0] < 1) throw new UsageException($"{option}: {path} holds no vectors.");
        return ExitCodes.Validate(option, () => new VectorSet(arr.ToFloat64(), arr.Shape[0], arr.Shape[1], name));
    }

    private static double LogSumExp(VectorSet q, VectorSet k, int i)
    {
        var l = new double[k.Count];
        for (int j = 0; j < k.Count; j++) l[j] = VectorSet.Dot(q[i], k[j]);
        double max = l.Max(), s = 0;
        foreach (double x in l) s += Math.Exp(x - max);
        return max + Math.Log(s);
    }

    private static string F(double x) => x.ToString("G6", CultureInfo.InvariantCulture);
}
