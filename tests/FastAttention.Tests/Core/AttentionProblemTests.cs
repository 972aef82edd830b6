namespace FastAttention.Tests.Core;

public class AttentionProblemTests
{
    [Fact]
    public void Rejects_wrong_lengths_naming_the_argument()
    {
        var e = Assert.Throws<ArgumentException>(() => new AttentionProblem<double>(new double[5], new double[6], new double[6], 2, 3, 2, 2));
        Assert.Equal("q", e.ParamName);
        Assert.Contains("needs 4", e.Message);
    }

    [Fact]
    public void Rejects_non_finite_inputs()
    {
        var k = new double[4]; k[3] = double.NaN;
        var e = Assert.Throws<ArgumentException>(() => new AttentionProblem<double>(new double[2], k, new double[2], 1, 2, 2, 1));
        Assert.Equal("k", e.ParamName);
        Assert.Contains("non-finite", e.Message);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(3, false)]
    [InlineData(5, true)]
    public void WithQueries_gives_the_result_of_a_fresh_problem_and_keeps_the_checked_keys(int n, bool causal)
    {
        // A decode step against a grouped-query KV cache: 4 query heads over 2 K/V heads, m = 300, bottom-right causal.
        int heads = 4, kvHeads = 2, m = 300, d = 16, dv = 8;
        var rng = new Random(7 + n);
        float[] R(int len) { var a = new float[len]; for (int i = 0; i < len; i++) a[i] = (float)(2 * rng.NextDouble() - 1); return a; }
        var k = R(kvHeads * m * d); var v = R(kvHeads * m * dv);
        var mask = new AttentionMask { CausalAlignment = CausalAlignment.BottomRight };
        var first = new AttentionProblem<float>(R(heads * 2 * d), k, v, 2, m, d, dv, heads, causal: causal, mask: mask, kvHeads: kvHeads);
        var exact = AttentionAlgorithms.Create("exact");
        exact.Compute(first, new AttentionSettings());                  // fills the K/V caches
        var q = R(heads * n * d);
        var step = first.WithQueries(q, n);
        var fresh = new AttentionProblem<float>(q, k, v, n, m, d, dv, heads, causal: causal, mask: mask, kvHeads: kvHeads);
        Assert.Equal(n, step.N);
        Assert.Equal(fresh.KMax, step.KMax);
        Assert.Equal(fresh.VMax, step.VMax);
        var a = exact.Compute(step, new AttentionSettings());
        var b = exact.Compute(fresh, new AttentionSettings());
        Assert.Equal(b.Output, a.Output);                               // bit for bit
        Assert.Equal(b.Certificate.ErrorBound, a.Certificate.ErrorBound); // the carried statistics are the same numbers
        // Q is still validated ...
        var bad = (float[])q.Clone(); bad[1] = float.NaN;
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => first.WithQueries(bad, n)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => first.WithQueries(q, n + 1)).ParamName);
        // ... but K and V are not scanned again: that is the point (the problem's data are read-only by contract).
        k[5] = float.NaN;
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => new AttentionProblem<float>(q, k, v, n, m, d, dv, heads, kvHeads: kvHeads)).ParamName);
        Assert.Equal(n, first.WithQueries(q, n).N);
    }

    [Fact]
    public void Rejects_non_finite_scale_and_bad_dimensions()
    {
        Assert.Throws<ArgumentException>(() => new AttentionProblem<double>(new double[1], new double[1], new double[1], 1, 1, 1, 1, scale: double.PositiveInfinity));
        Assert.Equal("n", Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionProblem<double>(new double[0], new double[1], new double[1], 0, 1, 1, 1)).ParamName);
    }

    [Fact]
    public void Measures_entry_bound_and_defaults_scale_to_inverse_sqrt_d()
    {
        var p = new AttentionProblem<float>(new float[] { 1, -3, 0, 0 }, new float[] { 2, 0, 0, 0, 0, 0, 0, 0 }, new float[] { -7, 1 }, 1, 2, 4, 1);
        Assert.Equal(3, p.QMax);
        Assert.Equal(7, p.EntryBound);
        Assert.Equal(0.5, p.Scale);
    }

    [Fact]
    public void Approximate_algorithms_reject_bad_epsilon_and_threads()
    {
        var p = new AttentionProblem<double>(new double[1], new double[1], new double[1], 1, 1, 1, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => AttentionAlgorithms.Create("exact").Compute(p, new AttentionSettings { Threads = -1 }));
    }

    [Fact]
    public void Registry_names_unknown_algorithms()
    {
        var e = Assert.Throws<ArgumentException>(() => AttentionAlgorithms.Create("nope"));
        Assert.Contains("exact", e.Message);
    }
}

public class AttentionMaskValidationTests
{
    private static AttentionProblem<double> Make(AttentionMask? mask = null, int batch = 2, int heads = 4, int kvHeads = 2, double[]? k = null, bool causal = false) =>
        new(new double[heads * 3 * 2], k ?? new double[kvHeads * 5 * 2], new double[kvHeads * 5 * 2], 3, 5, 2, 2, heads, null, causal, mask, kvHeads, batch);

    [Fact]
    public void Grouped_heads_must_divide_and_k_v_are_sized_by_the_kv_heads()
    {
        Assert.Equal(2, Make().GroupSize);
        Assert.Equal(1, Make().KvHead(3));
        Assert.Equal("kvHeads", Assert.Throws<ArgumentOutOfRangeException>(() => Make(kvHeads: 3, batch: 1)).ParamName);
        Assert.Equal("batch", Assert.Throws<ArgumentOutOfRangeException>(() => Make(batch: 3)).ParamName);
        var e = Assert.Throws<ArgumentException>(() => new AttentionProblem<double>(new double[12], new double[40], new double[20], 3, 5, 2, 2, 2, kvHeads: 2));
        Assert.Equal("k", e.ParamName);
        Assert.Contains("kvHeads×m×d = 2×5×2", e.Message);
    }

    [Fact]
    public void Key_lengths_need_one_per_batch_element_within_m()
    {
        Assert.Contains("shape (3) but the batch is (2)", Assert.Throws<ArgumentException>(() => Make(new AttentionMask { KeyLengths = new[] { 1, 2, 3 } })).Message);
        Assert.Contains("outside [0, m = 5]", Assert.Throws<ArgumentException>(() => Make(new AttentionMask { KeyLengths = new[] { 1, 6 } })).Message);
        Assert.Equal(3, Make(new AttentionMask { KeyLengths = new[] { 5, 3 } }).Head(2).M);
    }

    [Fact]
    public void Broadcast_shapes_are_checked_naming_both_shapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Make(new AttentionMask { Bias = new BroadcastTensor<double>(new double[2 * 4 * 3 * 4], 2, 4, 3, 4) }));
        Assert.Contains("(2, 4, 3, 4)", e.Message);
        Assert.Contains("(2, 2, 3, 5)", e.Message); // [b, h, n, m] with h = 4 heads / batch 2
        Assert.Contains("bias", e.Message);
        Assert.Throws<ArgumentException>(() => Make(new AttentionMask { BooleanMask = new BroadcastTensor<bool>(new bool[3 * 3 * 5], 3, 3, 5) }));
        // Lower ranks are right-aligned, dimensions of 1 broadcast.
        Assert.NotNull(Make(new AttentionMask { BooleanMask = new BroadcastTensor<bool>(new bool[5], 5), Bias = new BroadcastTensor<double>(new double[2 * 3], 2, 3, 1) }));
        Assert.Contains("window", Assert.Throws<ArgumentException>(() => Make(new AttentionMask { Window = 0 })).Message);
    }

    [Fact]
    public void Non_finite_values_are_rejected_only_where_they_would_be_read()
    {
        var k = new double[2 * 5 * 2];
        k[(1 * 5 + 4) * 2] = double.NaN; // K/V head 1 (batch 1), key 4
        Assert.Contains("non-finite", Assert.Throws<ArgumentException>(() => Make(k: k)).Message);
        Assert.NotNull(Make(new AttentionMask { KeyLengths = new[] { 5, 4 } }, k: k)); // key 4 of batch 1 is padding
        var bias = new double[5];
        bias[4] = double.NaN;
        Assert.Contains("the bias is NaN", Assert.Throws<ArgumentException>(() => Make(new AttentionMask { Bias = new BroadcastTensor<double>(bias, 5) })).Message);
        var hidden = new bool[5] { true, true, true, true, false };
        Assert.NotNull(Make(new AttentionMask { Bias = new BroadcastTensor<double>(bias, 5), BooleanMask = new BroadcastTensor<bool>(hidden, 5) }));
        bias[4] = double.PositiveInfinity;
        Assert.NotNull(Make(new AttentionMask { Bias = new BroadcastTensor<double>(bias, 5), KeyLengths = new[] { 4, 4 } }));
        bias[4] = double.NegativeInfinity; // −∞ hides the pair and is allowed anywhere
        Assert.NotNull(Make(new AttentionMask { Bias = new BroadcastTensor<double>(bias, 5) }));
    }

    [Fact]
    public void Key_ranges_follow_the_alignment_and_window()
    {
        // n = 3 queries, m = 5 keys.
        var tl = Make(causal: true).Head(0);
        Assert.Equal((0, 1), tl.KeyRange(0));
        var br = Make(new AttentionMask { CausalAlignment = CausalAlignment.BottomRight }, causal: true).Head(0);
        Assert.Equal((0, 3), br.KeyRange(0));
        Assert.Equal((0, 5), br.KeyRange(2));
        var win = Make(new AttentionMask { CausalAlignment = CausalAlignment.BottomRight, Window = 2, KeyLengths = new[] { 5, 2 } }).Head(3);
        Assert.Equal((0, 0), win.KeyRange(0)); // m_b = 2, diagonal of row 0 is key −1: sees nothing
        Assert.Equal((0, 1), win.KeyRange(1));
        Assert.Equal((0, 2), win.KeyRange(2));
    }
}
