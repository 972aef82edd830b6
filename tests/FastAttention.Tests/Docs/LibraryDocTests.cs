using System.Text.RegularExpressions;
using FastAttention.Exact;
using FastAttention.Tests.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Docs;

/// <summary>docs/library.md shows exactly the code of <see cref="LibraryExamples"/>, and that code does what the document says.</summary>
public partial class LibraryDocTests
{
    [GeneratedRegex(@"<!-- example: (?<name>[a-z-]+) -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex DocBlock();

    [GeneratedRegex(@"// <example:(?<name>[a-z-]+)>\n(?<code>.*?)[ \t]*// </example:\k<name>>", RegexOptions.Singleline)]
    private static partial Regex SourceRegion();

    [Fact]
    public void The_document_shows_the_examples_code_verbatim()
    {
        string root = RepositoryRoot();
        string doc = File.ReadAllText(Path.Combine(root, "docs", "library.md")).ReplaceLineEndings("\n");
        string source = File.ReadAllText(Path.Combine(root, "tests", "FastAttention.Tests", "Docs", "LibraryExamples.cs")).ReplaceLineEndings("\n");
        var blocks = DocBlock().Matches(doc).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["code"].Value);
        var regions = SourceRegion().Matches(source).ToDictionary(m => m.Groups["name"].Value, m => Dedent(m.Groups["code"].Value));
        Assert.Equal(new[] { "certified", "decode-loop", "exact-buffer", "multi-head", "usings" }, regions.Keys.Order());
        Assert.Equal(regions.Keys.Order(), blocks.Keys.Order());
        foreach (var (name, code) in regions)
            Assert.True(blocks[name] == code, $"docs/library.md's example '{name}' differs from LibraryExamples.cs:\n--- doc\n{blocks[name]}--- source\n{code}");
    }

    [Fact]
    public void Decode_loop_gives_each_steps_attention_bit_for_bit()
    {
        var (cache, queries, outputs) = LibraryExamples.DecodeLoop();
        Assert.Equal(8, outputs.Length);
        for (int t = 0; t < outputs.Length; t++)
        {
            // A fresh problem per step (K and V checked again) gives the same bits; and both match the reference.
            var fresh = new AttentionProblem<float>(queries[t], cache.K, cache.V, 1, cache.M, cache.D, cache.Dv);
            Assert.Equal(new FlashAttention().Compute(fresh).Output, outputs[t]);
            double err = TestData.MaxAbsDiff<float>(outputs[t], ReferenceAttention.Compute(fresh));
            Assert.True(err <= FlashAttentionTests.Float32Tolerance(fresh.Scale * fresh.D, fresh.M, fresh.VMax), $"step {t}: error {err:E3}");
        }
        Assert.NotEqual(outputs[0], outputs[1]); // the steps' queries differ
    }

    [Fact]
    public void Exact_into_your_buffer_matches_the_reference()
    {
        var (p, output, certificate) = LibraryExamples.ExactIntoYourBuffer();
        Assert.Equal("exact", certificate.Algorithm);
        Assert.Equal(p.OutputLength, output.Length);
        double err = TestData.MaxAbsDiff<float>(output, ReferenceAttention.Compute(p));
        Assert.True(err <= FlashAttentionTests.Float32Tolerance(p.Scale * p.D, p.M, p.VMax), $"error {err:E3}");
    }

    [Fact]
    public void Certified_example_meets_epsilon_and_falls_back_to_exact_on_the_refusal()
    {
        var (small, fast, large, fallback, refusals) = LibraryExamples.CertifiedWithARefusalHandled();
        Assert.Equal("polynomial", fast.Certificate.Algorithm);
        Assert.True(fast.Certificate.ErrorBound <= 1e-4);
        var rows = Enumerable.Range(0, 64).Select(i => i * 61 % small.N).ToArray();
        Assert.True(RowError(fast.Output, small, rows) <= 1e-4);

        var refusal = Assert.Single(refusals); // the large problem only
        Assert.Equal("polynomial", refusal.Algorithm);
        Assert.Equal(RefusalReason.Float64Reach, refusal.Reason);
        Assert.Contains("'range'", refusal.Detail); // the document says the detail points there
        Assert.Equal("exact", fallback.Certificate.Algorithm);
        Assert.True(RowError(fallback.Output, large, rows) <= 1e-12 * large.VMax);
    }

    [Fact]
    public void Multi_head_example_gives_each_heads_causal_attention_in_the_bnhd_layout()
    {
        var (q, k, v, output, b, n, h, d) = LibraryExamples.MultiHeadBnhd();
        for (int bi = 0; bi < b; bi++)
            for (int hh = 0; hh < h; hh++)
            {
                // Gather head (bi, hh) straight from the [b, n, h, d] arrays, by index.
                float[] Gather(float[] x)
                {
                    var r = new float[n * d];
                    for (int i = 0; i < n; i++)
                        for (int c = 0; c < d; c++) r[i * d + c] = x[((bi * n + i) * h + hh) * d + c];
                    return r;
                }
                var head = new AttentionProblem<float>(Gather(q), Gather(k), Gather(v), n, n, d, d, causal: true);
                double err = TestData.MaxAbsDiff<float>(Gather(output), ReferenceAttention.Compute(head));
                Assert.True(err <= FlashAttentionTests.Float32Tolerance(head.Scale * d, n, head.VMax), $"head ({bi}, {hh}): error {err:E3}");
            }
    }

    private static double RowError(double[] output, AttentionProblem<double> p, int[] rows)
    {
        var reference = ReferenceAttention.ComputeRows(p, 0, rows);
        double e = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < p.Dv; c++) e = Math.Max(e, Math.Abs(output[rows[r] * p.Dv + c] - reference[r * p.Dv + c]));
        return e;
    }

    /// <summary>Removes the indentation common to all non-blank lines.</summary>
    private static string Dedent(string code)
    {
        var lines = code.Split('\n');
        int indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return string.Join("\n", lines.Select(l => l.Trim().Length == 0 ? "" : l[indent..]));
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "FastAttention.sln"))) return dir.FullName;
        Assert.Fail($"no FastAttention.sln above {AppContext.BaseDirectory}");
        return "";
    }
}
