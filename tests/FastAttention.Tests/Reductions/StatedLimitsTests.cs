using System.Globalization;
using FastAttention.Cli;
using FastAttention.IO;
using FastAttention.Reductions;
using FastAttention.Tests.Cli;

namespace FastAttention.Tests.Reductions;

/// <summary>
/// The limits that messages and the README state for rowsums and maxip are where refusal really starts: computed by
/// the same code that refuses, served at the limit, refused just above it, and the README quotes those numbers.
/// </summary>
public class StatedLimitsTests
{
    /// <summary>The worst case the limits are stated for: queries a·1, keys alternating ±a·1.</summary>
    private static (VectorSet Q, VectorSet K) WorstCase(int n, int m, int d, double a)
    {
        var q = Enumerable.Repeat(a, n * d).ToArray();
        var k = new double[m * d];
        for (int j = 0; j < m; j++) for (int l = 0; l < d; l++) k[j * d + l] = j % 2 == 0 ? a : -a;
        return (new VectorSet(q, n, d, "Q"), new VectorSet(k, m, d, "K"));
    }

    [Theory]
    [InlineData(16, 10, 1e-2)]
    [InlineData(16, 10, 1e-8)]
    [InlineData(16, 3, 1e-4)]
    public void Rowsums_is_served_at_the_stated_entry_limit_and_refused_just_above(int m, int d, double eps)
    {
        double a = RowSumsViaAttention.MaxEntry(m, d, eps);
        Assert.True(a > 0);
        var (q, k) = WorstCase(2, m, d, a);
        var served = RowSumsViaAttention.Estimate(q, k, eps, ReductionData.Exact());
        // Every row sum is e^{d·a²}·(m/2 + (m/2)·e^{−2d·a²}): check against it in the log domain.
        double truth = d * a * a + Math.Log(m / 2.0) + double.LogP1(Math.Exp(-2 * d * a * a));
        foreach (double log in served.LogEstimates) Assert.True(Math.Abs(log - truth) <= Math.Log(1 + eps) * (1 + 1e-6), $"ln Ŝ = {log}, ln S = {truth}");
        var (q2, k2) = WorstCase(2, m, d, a * (1 + 1e-9));
        var oracle = ReductionData.Exact();
        var e = Assert.Throws<AttentionRefusedException>(() => RowSumsViaAttention.Estimate(q2, k2, eps, oracle));
        Assert.Equal(RefusalReason.Float64Reach, e.Reason);
        Assert.Contains("certifies Λ ≤", e.Message);
        Assert.Equal(0, oracle.Calls); // refused before the first call
    }

    [Fact]
    public void Maxip_limit_is_the_refusal_point_and_the_hint_states_it()
    {
        double limit = MaxIpViaAttention.MaxEntryFor(16, 4);
        var (a, b) = WorstCase(2, 16, 4, limit);
        var oracle = ReductionData.Exact();
        var res = MaxIpViaAttention.Solve(a, b, oracle);
        Assert.All(res.Maxima, x => Assert.Equal((long)(4 * limit * limit), x));
        var (a2, b2) = WorstCase(2, 16, 4, limit + 1);
        var fresh = ReductionData.Exact();
        var e = Assert.Throws<AttentionRefusedException>(() => MaxIpViaAttention.Solve(a2, b2, fresh));
        Assert.Equal(0, fresh.Calls);
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"use entries |x| ≤ {limit:G6} for d = 4, m = 16"), e.Message);
    }

    [Fact]
    public void Readme_quotes_the_computed_limits()
    {
        string readme = File.ReadAllText(FindReadme());
        string F(double x) => x.ToString("G3", CultureInfo.InvariantCulture).Replace("E+0", "e").Replace("E+", "e");
        Assert.Contains($"entries \\|x\\| ≤ {F(RowSumsViaAttention.MaxEntry(16, 10, 1e-2))} at ε = 1e-2, {F(RowSumsViaAttention.MaxEntry(16, 10, 1e-4))} at ε = 1e-4, " +
            $"{F(RowSumsViaAttention.MaxEntry(16, 10, 1e-8))} at ε = 1e-8, {F(RowSumsViaAttention.MaxEntry(16, 10, 1e-12))} at ε = 1e-12; nothing at ε ≤ 1e-13", readme);
        Assert.Equal(0, RowSumsViaAttention.MaxEntry(16, 10, 1e-13));
        Assert.Contains($"\\|x\\| ≤ {MaxIpViaAttention.MaxEntryFor(16, 4)} (m = 16, d = 4), {MaxIpViaAttention.MaxEntryFor(16, 10)} (16, 10), " +
            $"{MaxIpViaAttention.MaxEntryFor(1024, 10)} (1024, 10), {MaxIpViaAttention.MaxEntryFor(1024, 64)} (1024, 64)", readme);
    }

    [Fact]
    public void The_cli_message_names_the_real_limit()
    {
        string dir = CliRunner.TempDir();
        double a = RowSumsViaAttention.MaxEntry(16, 10, 1e-2) * 1.01;
        var (q, k) = WorstCase(2, 16, 10, a);
        NpyFile.Write(Path.Combine(dir, "q.npy"), q.Data, [2, 10]);
        NpyFile.Write(Path.Combine(dir, "k.npy"), k.Data, [16, 10]);
        var o = new StringWriter(); var err = new StringWriter();
        int code = Program.Run(["reduce", "rowsums", "--q", Path.Combine(dir, "q.npy"), "--k", Path.Combine(dir, "k.npy"), "--epsilon", "1e-2"], o, err);
        Assert.Equal(2, code);
        Assert.Single(err.ToString().Trim().Split('\n'));
        Assert.Contains("certifies Λ ≤", err.ToString());
    }

    private static string FindReadme()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "README.md")) && Directory.Exists(Path.Combine(dir.FullName, "src")))
                return Path.Combine(dir.FullName, "README.md");
        throw new FileNotFoundException("README.md above the test binaries");
    }
}
