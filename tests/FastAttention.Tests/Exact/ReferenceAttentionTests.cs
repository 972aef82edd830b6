using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

public class ReferenceAttentionTests
{
    [Fact]
    public void Matches_a_hand_computed_two_key_example()
    {
        // q = [1], keys [0] and [ln 3], s = 1: weights 1 and 3, so the output is (1·v₀ + 3·v₁)/4.
        var p = new AttentionProblem<double>(new[] { 1.0 }, new[] { 0.0, Math.Log(3) }, new[] { 2.0, 6.0 }, 1, 2, 1, 1, scale: 1);
        var o = ReferenceAttention.Compute(p);
        Assert.Equal((2.0 + 3 * 6.0) / 4, o[0], 14);
    }

    [Fact]
    public void Causal_first_row_sees_only_the_first_key()
    {
        var p = TestData.Problem(5, 5, 3, 2, 2, 7, causal: true);
        var o = ReferenceAttention.Compute(p);
        Assert.Equal(p.V.Span[0], o[0], 15);
        Assert.Equal(p.V.Span[1], o[1], 15);
    }

    [Fact]
    public void Extreme_logits_give_the_one_hot_row_without_nan()
    {
        // logits 1e4·(1, 0.5, −1): all weight on key 0.
        var p = new AttentionProblem<double>(new[] { 100.0 }, new[] { 100.0, 50.0, -100.0 }, new[] { 1.0, 2.0, 3.0 }, 1, 3, 1, 1, scale: 1);
        var o = ReferenceAttention.Compute(p);
        Assert.Equal(1.0, o[0]);
    }

    [Theory]
    [InlineData(1e308)]
    [InlineData(-1e308)]
    [InlineData(1e300)]
    public void Logits_beyond_float64_still_give_the_softmax_of_the_real_logits(double scale)
    {
        // s·q·k overflows float64 (|s·q·k| ≈ 1e308·1e4): the softmax of the real logits is the one-hot row of the largest
        // s·q·k, or the mean over keys tied at it — never NaN, and never the zero row of a row that sees no key.
        double sign = Math.Sign(scale);
        // One key: its value, whatever the logit's sign.
        foreach (double qk in new[] { 1e4, -1e4 })
        {
            var one = new AttentionProblem<double>(new[] { qk / 100 }, new[] { 100.0 }, new[] { 3.0, -7.0 }, 1, 1, 1, 2, scale: scale);
            Assert.Equal(new[] { 3.0, -7.0 }, ReferenceAttention.Compute(one));
        }
        // Distinct logits, all of the same sign (all overflow to −∞ for one sign of s): the largest s·q·k wins.
        var k = new[] { 100.0, 120.0, 80.0 };
        var v = new[] { 1.0, 2.0, 3.0 };
        var p = new AttentionProblem<double>(new[] { 100.0 }, k, v, 1, 3, 1, 1, scale: scale);
        Assert.Equal(sign > 0 ? 2.0 : 3.0, ReferenceAttention.Compute(p)[0]);
        // Duplicate keys tied at the maximum: their mean.
        var tied = new AttentionProblem<double>(new[] { 100.0 }, new[] { 120.0, 50.0, 120.0 }, new[] { 1.0, 5.0, 4.0 }, 1, 3, 1, 1, scale: Math.Abs(scale));
        Assert.Equal(2.5, ReferenceAttention.Compute(tied)[0], 15);
        // The log-sum-exp of a row whose max logit exceeds float64 is +∞, not NaN.
        var row = new double[1];
        double lse = ReferenceAttention.Row(new[] { 100.0 }, new[] { 120.0, 50.0 }, new[] { 1.0, 5.0 }, 2, 1, 1, 1e308, false, 0, row);
        Assert.Equal(1.0, row[0]);
        Assert.True(double.IsPositiveInfinity(lse));
    }

    [Fact]
    public void Zero_query_gives_the_mean_of_values()
    {
        var v = new[] { 1.0, 2.0, 3.0, 6.0 };
        var p = new AttentionProblem<double>(new[] { 0.0, 0.0 }, TestData.Uniform(8, 5, 3), v, 1, 4, 2, 1);
        Assert.Equal(3.0, ReferenceAttention.Compute(p)[0], 14);
    }
}
