using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Core;

/// <summary>
/// Key lengths and grouped-query heads work for every algorithm (they only change which keys exist and which K/V
/// head is read); a bias, boolean mask or window is refused by the approximate ones with
/// <see cref="RefusalReason.MaskUnsupported"/>; polynomial supports both causal alignments (vector, range and lowrank
/// too: RangeFamilyTests), rounding neither.
/// </summary>
public class MaskSupportTests
{
    /// <summary>(algorithm, d, bound, scale, ε) each algorithm serves comfortably.</summary>
    public static TheoryData<string, int, double, double, double> Approximate() => new()
    {
        { "polynomial", 2, 1, 0.5, 1e-4 },
        { "vector", 1, 2, 1, 1e-5 },
        { "rounding", 1, 2, 1, 1e-5 },
        { "range", 2, 1, 1, 1e-5 },
        { "lowrank", 2, 1, 1, 1e-5 },
    };

    [Theory]
    [MemberData(nameof(Approximate))]
    public void Key_lengths_and_grouped_query_heads_work_for_every_algorithm(string name, int d, double bound, double scale, double epsilon)
    {
        var mask = new AttentionMask { KeyLengths = new[] { 150, 0, 37 } };
        var p = MaskedData.Problem<double>(3, 4, 2, 60, 150, d, 3, seed: d + name.Length, mask: mask, bound: bound, scale: scale);
        var alg = AttentionAlgorithms.Create(name);
        var r = alg.Compute(p, new AttentionSettings { Epsilon = epsilon, Threads = 2 });
        var reference = ReferenceAttention.Compute(p);
        double err = TestData.MaxAbsDiff(r.Output, reference);
        Assert.True(r.Certificate.ErrorBound <= epsilon, $"{name}: certificate {r.Certificate.ErrorBound:E3} > ε");
        Assert.True(err <= epsilon, $"{name}: error {err:E3} > ε = {epsilon:E1}");
        // Batch element 1 has no key: its rows are zero.
        for (int t = 4 * 60 * 3; t < 8 * 60 * 3; t++) Assert.Equal(0.0, r.Output[t]);
    }

    [Theory]
    [MemberData(nameof(Approximate))]
    public void Bias_boolean_mask_and_window_are_refused_with_their_reason_code(string name, int d, double bound, double scale, double epsilon)
    {
        var plain = MaskedData.Problem<double>(1, 2, 2, 20, 30, d, 2, seed: 3, bound: bound, scale: scale);
        var alg = AttentionAlgorithms.Create(name);
        foreach (var mask in new[]
        {
            new AttentionMask { Bias = MaskedData.RandomBias([20, 30], 1, 4) },
            new AttentionMask { BooleanMask = MaskedData.BooleanMask([1, 2, 1, 30], 0.5, 5) },
            new AttentionMask { Window = 4 },
        })
        {
            var e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(plain.WithMask(mask), new AttentionSettings { Epsilon = epsilon }));
            Assert.Equal(RefusalReason.MaskUnsupported, e.Reason);
            Assert.Contains("exact", e.Refusal.Alternatives);
        }
        // float16 problems are for exact only.
        var half = MaskedData.Problem<Half>(1, 1, 1, 8, 8, d, 2, seed: 6);
        Assert.Equal(RefusalReason.Unsupported, Assert.Throws<AttentionRefusedException>(() => alg.Compute(half, new AttentionSettings { Epsilon = epsilon })).Reason);
        // The exact algorithms honour every mask.
        foreach (var exact in new[] { "exact", "reference" })
            Assert.NotNull(AttentionAlgorithms.Create(exact).Compute(plain.WithMask(new AttentionMask { Window = 4, Bias = MaskedData.RandomBias([30], 1, 7) })).Output);
    }

    [Theory]
    [InlineData(96, 72)]
    [InlineData(40, 130)]
    [InlineData(5000, 4200)]
    public void Polynomial_supports_the_bottom_right_alignment(int n, int m)
    {
        var mask = new AttentionMask { CausalAlignment = CausalAlignment.BottomRight };
        var p = MaskedData.Problem<double>(1, 2, 1, n, m, 2, 3, seed: n + m, causal: true, mask: mask, bound: 1, scale: 0.5);
        var r = AttentionAlgorithms.Create("polynomial").Compute(p, new AttentionSettings { Epsilon = 1e-4, Threads = 2 });
        var rows = n > 1000 ? Enumerable.Range(0, 40).Select(i => i * (n / 40)).Append(n - 1).ToArray() : Enumerable.Range(0, n).ToArray();
        for (int h = 0; h < 2; h++)
        {
            var reference = ReferenceAttention.ComputeRows(p, h, rows);
            for (int r0 = 0; r0 < rows.Length; r0++)
                for (int c = 0; c < 3; c++)
                {
                    double e = Math.Abs(r.Output[(h * n + rows[r0]) * 3 + c] - reference[r0 * 3 + c]);
                    Assert.True(e <= 1e-4, $"head {h} row {rows[r0]}: error {e:E3}");
                }
        }
        // The rounding scheme (prefix sums over all sorted keys) supports no causal mask, in either alignment.
        var rounding = Assert.Throws<AttentionRefusedException>(() => AttentionAlgorithms.Create("rounding").Compute(
            MaskedData.Problem<double>(1, 1, 1, 10, 12, 1, 1, 1, causal: true, mask: mask), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Equal(RefusalReason.CausalUnsupported, rounding.Reason);
    }
}
