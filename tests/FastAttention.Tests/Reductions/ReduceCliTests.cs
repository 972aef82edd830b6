using System.Text.Json;
using FastAttention.Cli.Commands;
using FastAttention.IO;
using FastAttention.Reductions;
using FastAttention.Tests.Cli;

namespace FastAttention.Tests.Reductions;

public class ReduceCliTests
{
    private static string Save(string dir, string name, VectorSet v)
    {
        string p = Path.Combine(dir, name);
        NpyFile.Write(p, v.Data, [v.Count, v.Dimension]);
        return p;
    }

    [Fact]
    public void Ov_json_reports_a_rechecked_witness_the_call_and_the_instance()
    {
        string dir = CliRunner.TempDir();
        var (a, b) = ReductionData.OvInstance(77, plant: true);
        var (code, stdout, stderr) = CliRunner.Run("reduce", "ov", "--a", Save(dir, "a.npy", a), "--b", Save(dir, "b.npy", b), "--json", "--threads", "1");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal("ov", root.GetProperty("problem").GetString());
        Assert.True(root.GetProperty("answer").GetBoolean());
        var w = root.GetProperty("witness");
        Assert.Equal(0, VectorSet.Dot(a[w[0].GetInt32()], b[w[1].GetInt32()]));
        Assert.Equal("exact", root.GetProperty("oracle").GetString());
        Assert.Equal(1, root.GetProperty("oracleCalls").GetInt32());
        var inst = root.GetProperty("instance");
        Assert.Equal(a.Count + 1, inst.GetProperty("n").GetInt32());
        Assert.Equal(a.Dimension + 1, inst.GetProperty("d").GetInt32());
        Assert.True(inst.GetProperty("bound").GetDouble() > 0);
        Assert.Equal(0.1, inst.GetProperty("epsilon").GetDouble(), 12);
    }

    [Fact]
    public void Maxip_json_answer_is_the_list_of_maxima()
    {
        string dir = CliRunner.TempDir();
        var a = new VectorSet([1.0, -2.0, 3.0, 0.0, -1.0, 4.0], 3, 2, "A");
        var b = new VectorSet([2.0, 1.0, -1.0, -1.0], 2, 2, "B");
        var (code, stdout, stderr) = CliRunner.Run("reduce", "maxip", "--a", Save(dir, "a.npy", a), "--b", Save(dir, "b.npy", b), "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(new long[] { 1, 6, 2 }, doc.RootElement.GetProperty("answer").EnumerateArray().Select(x => x.GetInt64()).ToArray());
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("witness").ValueKind);
    }

    [Fact]
    public void Sat_text_and_json_for_satisfiable_and_unsatisfiable_formulas()
    {
        string dir = CliRunner.TempDir();
        string sat = Path.Combine(dir, "sat.cnf"), unsat = Path.Combine(dir, "unsat.cnf");
        File.WriteAllText(sat, "c x1 and not x2\np cnf 2 2\n1 0\n-2 0\n");
        File.WriteAllText(unsat, "p cnf 2 4\n1 2 0\n1 -2 0\n-1 2 0\n-1 -2 0\n");
        var (code, stdout, stderr) = CliRunner.Run("reduce", "sat", "--cnf", sat, "--json");
        Assert.True(code == 0, stderr);
        using (var doc = JsonDocument.Parse(stdout))
        {
            Assert.True(doc.RootElement.GetProperty("answer").GetBoolean());
            Assert.Equal(new[] { 1, 0 }, doc.RootElement.GetProperty("witness").EnumerateArray().Select(x => x.GetInt32()).ToArray());
        }
        (code, stdout, stderr) = CliRunner.Run("reduce", "sat", "--cnf", unsat);
        Assert.True(code == 0, stderr);
        Assert.Contains("answer: unsatisfiable", stdout);
        Assert.Contains("brute force agrees", stdout);
    }

    [Fact]
    public void Bad_input_exits_2_with_one_line()
    {
        string dir = CliRunner.TempDir();
        string bad = Path.Combine(dir, "bad.cnf");
        File.WriteAllText(bad, "p cnf 2 1\n1 7 0\n");
        var (code, _, stderr) = CliRunner.Run("reduce", "sat", "--cnf", bad);
        Assert.Equal(2, code);
        Assert.Contains("bad.cnf:2:", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
        var ones = new VectorSet(Enumerable.Repeat(1.0, 4 * 60).ToArray(), 4, 60, "A");
        string p = Save(dir, "ones.npy", ones);
        (code, _, stderr) = CliRunner.Run("reduce", "ov", "--a", p, "--b", p, "--method", "log-two");
        Assert.Equal(2, code);
        Assert.Contains("which float64 cannot certify", stderr);
        (code, _, stderr) = CliRunner.Run("reduce", "ov", "--a", p, "--b", p, "--oracle", "no-such-oracle");
        Assert.Equal(2, code);
        Assert.Contains("unknown algorithm 'no-such-oracle'", stderr);
    }

    [Fact]
    public void Ann_and_rowsums_json()
    {
        string dir = CliRunner.TempDir();
        var a = new VectorSet([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], 2, 4, "A");
        var b = new VectorSet([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0], 2, 4, "B");
        var (code, stdout, stderr) = CliRunner.Run("reduce", "ann", "--a", Save(dir, "a.npy", a), "--b", Save(dir, "b.npy", b), "--epsilon", "0.5", "--json");
        Assert.True(code == 0, stderr);
        using (var doc = JsonDocument.Parse(stdout))
        {
            var pair = doc.RootElement.GetProperty("answer").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            Assert.Equal(1, VectorSet.Hamming(a[pair[0]], b[pair[1]])); // the nearest pair (a_1, b_1) is at distance 1
        }
        (code, stdout, stderr) = CliRunner.Run("reduce", "rowsums", "--q", Save(dir, "q.npy", a), "--k", Save(dir, "k.npy", b), "--epsilon", "0.01", "--json");
        Assert.True(code == 0, stderr);
        using (var doc = JsonDocument.Parse(stdout))
        {
            var est = doc.RootElement.GetProperty("answer").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(2, est.Length);
            double s0 = Math.Exp(VectorSet.Dot(a[0], b[0])) + Math.Exp(VectorSet.Dot(a[0], b[1]));
            Assert.InRange(est[0], s0 * 0.99, s0 * 1.01);
        }
    }

    [Fact]
    public void Demo_section_solves_the_planted_instance_and_the_formula()
    {
        ReduceDemo.Register();
        ReduceDemo.Register();
        var sections = DemoCommand.Sections.Where(s => s.Title.StartsWith("Hardness", StringComparison.Ordinal)).ToList();
        Assert.Single(sections);
        var writer = new StringWriter();
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings { Out = new Spectre.Console.AnsiConsoleOutput(writer), Ansi = Spectre.Console.AnsiSupport.No });
        sections[0].Run(console, true);
        string text = writer.ToString();
        Assert.Contains("= 0", text);
        Assert.DoesNotContain("NO", text);
    }
}
