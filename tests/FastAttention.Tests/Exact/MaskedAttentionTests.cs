using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

/// <summary>
/// Grouped-query heads, key lengths, boolean masks, biases, windows and both causal alignments in the exact kernel,
/// against the float64 reference (which implements the same semantics independently, pair by pair), in float64,
/// float32 and float16; plus semantic identities that do not rely on the reference at all.
/// </summary>
public class MaskedAttentionTests
{
    private static readonly (int N, int M)[] Shapes = [(37, 53), (70, 29), (1, 131), (64, 64), (130, 7)];

    public static TheoryData<string> Features() => new(["gqa", "mqa", "key-lengths", "boolean", "bias", "alibi", "window", "bottom-right", "combined", "everything"]);

    /// <summary>(batch, query heads, K/V heads, causal, mask) of one feature at shape n × m.</summary>
    internal static (int Batch, int Hq, int Hkv, bool Causal, AttentionMask Mask) Case(string feature, int n, int m, int seed) => feature switch
    {
        "gqa" => (2, 4, 2, false, AttentionMask.None),
        "mqa" => (1, 3, 1, true, AttentionMask.None),
        "key-lengths" => (3, 2, 2, false, new AttentionMask { KeyLengths = new[] { m, (m + 1) / 2, 0 } }),
        "boolean" => (2, 2, 2, false, new AttentionMask { BooleanMask = MaskedData.BooleanMask([2, 1, n, m], 0.6, seed) }),
        "bias" => (2, 2, 1, false, new AttentionMask { Bias = WithMinusInfinity(MaskedData.RandomBias([2, 2, 1, m], 3, seed), seed) }),
        "alibi" => (1, 4, 4, true, new AttentionMask { Bias = MaskedData.Alibi(4, n, m), CausalAlignment = CausalAlignment.BottomRight }),
        "window" => (1, 2, 2, false, new AttentionMask { Window = 7 }),
        "bottom-right" => (1, 2, 2, true, new AttentionMask { CausalAlignment = CausalAlignment.BottomRight }),
        "combined" => (2, 4, 2, true, new AttentionMask { KeyLengths = new[] { Math.Max(1, m - 3), (m + 1) / 2 }, Window = 9, CausalAlignment = CausalAlignment.BottomRight }),
        "everything" => (2, 4, 2, true, new AttentionMask
        {
            KeyLengths = new[] { m, Math.Max(1, m / 3) }, Window = 11, CausalAlignment = CausalAlignment.BottomRight,
            BooleanMask = MaskedData.BooleanMask([n, m], 0.8, seed), Bias = MaskedData.RandomBias([2, 1, 1, m], 2, seed + 5),
        }),
        _ => throw new ArgumentException(feature),
    };

    private static BroadcastTensor<double> WithMinusInfinity(BroadcastTensor<double> b, int seed)
    {
        var data = b.Data.ToArray();
        var rng = new Random(seed);
        for (int i = 0; i < data.Length; i++) if (rng.NextDouble() < 0.2) data[i] = double.NegativeInfinity;
        return new BroadcastTensor<double>(data, [.. b.Shape]);
    }

    [Theory]
    [MemberData(nameof(Features))]
    public void Each_feature_matches_the_reference_in_float64_float32_and_float16(string feature)
    {
        var alg = new FlashAttention();
        var settings = new AttentionSettings { Threads = 2 };
        foreach (var (n, m) in Shapes)
            foreach (int d in new[] { 3, 16 })
            {
                int dv = d == 3 ? 5 : 16, seed = n * 31 + m + d;
                var (batch, hq, hkv, causal, mask) = Case(feature, n, m, seed);
                string at = $"{feature} n={n} m={m} d={d}";
                double biasMax = 0;
                if (mask.Bias is { } bt) foreach (double x in bt.Data.Span) if (double.IsFinite(x)) biasMax = Math.Max(biasMax, Math.Abs(x));

                var p64 = MaskedData.Problem<double>(batch, hq, hkv, n, m, d, dv, seed, causal, mask, bound: 1.5);
                var r64 = alg.Compute(p64, settings);
                double e64 = TestData.MaxAbsDiff(r64.Output, ReferenceAttention.Compute(p64));
                Assert.True(e64 <= 1e-12 * Math.Max(1, p64.VMax), $"{at} f64: error {e64:E3}");
                Assert.True(e64 <= r64.Certificate.ErrorBound, $"{at} f64: error {e64:E3} above the certificate {r64.Certificate.ErrorBound:E3}");

                var p32 = MaskedData.Problem<float>(batch, hq, hkv, n, m, d, dv, seed, causal, mask, bound: 1.5);
                var r32 = alg.Compute(p32, settings);
                double e32 = TestData.MaxAbsDiff(r32.Output, ReferenceAttention.Compute(p32));
                Assert.True(e32 <= FlashAttentionTests.Float32Tolerance(1.5 * 1.5 * d * p32.Scale + biasMax, m, p32.VMax), $"{at} f32: error {e32:E3}");
                Assert.True(e32 <= r32.Certificate.ErrorBound, $"{at} f32: error {e32:E3} above the certificate {r32.Certificate.ErrorBound:E3}");

                var p16 = MaskedData.Problem<Half>(batch, hq, hkv, n, m, d, dv, seed, causal, mask, bound: 1.5);
                var r16 = alg.Compute(p16, settings);
                var ref16 = ReferenceAttention.Compute(p16);
                double e16 = TestData.MaxAbsDiff(r16.Output, ref16);
                // float16 output: one rounding at 2⁻¹¹ on top of float32 accumulation.
                Assert.True(e16 <= Math.ScaleB(1.0, -11) * p16.VMax * 1.01, $"{at} f16: error {e16:E3}");
                Assert.True(e16 <= r16.Certificate.ErrorBound, $"{at} f16: error {e16:E3} above the certificate {r16.Certificate.ErrorBound:E3}");
                var wide = alg.ComputeFloat32Output(p16, settings);
                double e16to32 = TestData.MaxAbsDiff(wide.Output, ref16);
                Assert.True(e16to32 <= wide.Certificate.ErrorBound, $"{at} f16→f32: error {e16to32:E3} above {wide.Certificate.ErrorBound:E3}");
                Assert.True(e16to32 <= FlashAttentionTests.Float32Tolerance(1.5 * 1.5 * d * p16.Scale + biasMax, m, p16.VMax), $"{at} f16→f32: error {e16to32:E3}");
            }
    }

    [SimdTheory(16)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector512_kernel_paths_apply_the_mask(bool wide) => EveryPathAppliesTheMask(16, wide);

    [SimdTheory(8)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector256_kernel_paths_apply_the_mask(bool wide) => EveryPathAppliesTheMask(8, wide);

    [SimdTheory(4)]
    [InlineData(false)]
    public void Vector128_kernel_paths_apply_the_mask(bool wide) => EveryPathAppliesTheMask(4, wide);

    [Theory]
    [InlineData(false)]
    public void Scalar_kernel_paths_apply_the_mask(bool wide) => EveryPathAppliesTheMask(1, wide);

    /// <summary>Prefill, small-d and decode paths, with and without key splits, under every mask feature at once.</summary>
    private static void EveryPathAppliesTheMask(int lanes, bool wide)
    {
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
            foreach (int splits in new[] { 1, 3 })
            {
                var alg = new FlashAttention { ForcedFloat32Lanes = lanes, Tuning = new FlashTuning(Path: path, WideBlocks: wide, KeyBlock: 32, KeySplits: splits) };
                foreach (var (n, m) in new[] { (67, 300), (9, 520), (16, 70) })
                {
                    int nn = path == FlashPath.Decode ? Math.Min(n, 16) : n, d = path == FlashPath.SmallD ? 3 : 5, dv = path == FlashPath.SmallD ? 2 : 3;
                    var (batch, hq, hkv, causal, mask) = Case("everything", nn, m, nn + m);
                    var p = MaskedData.Problem<double>(batch, hq, hkv, nn, m, d, dv, nn + m, causal, mask);
                    double e = TestData.MaxAbsDiff(alg.Compute(p, new AttentionSettings { Threads = 2 }).Output, ReferenceAttention.Compute(p));
                    Assert.True(e <= 1e-12, $"lanes={lanes} wide={wide} path={path} splits={splits} n={nn} m={m}: {e:E3}");
                    var p32 = MaskedData.Problem<float>(batch, hq, hkv, nn, m, d, dv, nn + m, causal, mask);
                    var r32 = alg.Compute(p32, new AttentionSettings { Threads = 2 });
                    double e32 = TestData.MaxAbsDiff(r32.Output, ReferenceAttention.Compute(p32));
                    Assert.True(e32 <= r32.Certificate.ErrorBound, $"lanes={lanes} path={path} splits={splits} n={nn} m={m}: f32 {e32:E3} above the certificate {r32.Certificate.ErrorBound:E3}");
                }
            }
    }

    [Fact]
    public void Grouped_query_heads_read_the_shared_head_exactly_like_replicated_multi_head_attention()
    {
        foreach (var (batch, hq, hkv) in new[] { (2, 8, 2), (1, 4, 1), (3, 2, 2) })
        {
            var mask = new AttentionMask { CausalAlignment = CausalAlignment.BottomRight, Window = 13 };
            var gqa = MaskedData.Problem<float>(batch, hq, hkv, 45, 77, 8, 8, seed: hq * 10 + hkv, causal: true, mask: mask);
            var mha = MaskedData.Replicated(gqa);
            Assert.Equal(batch * hkv * 77 * 8, gqa.K.Length); // no copy: the problem holds the h_kv heads only
            var a = new FlashAttention().Compute(gqa, new AttentionSettings { Threads = 2 }).Output;
            var b = new FlashAttention().Compute(mha, new AttentionSettings { Threads = 2 }).Output;
            Assert.Equal(b, a); // the same arithmetic on the same K/V rows: bitwise equal
        }
    }

    [Fact]
    public void Key_lengths_give_exactly_the_problem_with_fewer_keys()
    {
        int n = 21, m = 90, d = 6, dv = 4, hq = 2;
        int[] lens = [90, 33, 1, 64];
        foreach (var align in new[] { CausalAlignment.TopLeft, CausalAlignment.BottomRight })
        {
            var mask = new AttentionMask { KeyLengths = lens, CausalAlignment = align };
            var p = MaskedData.Problem<double>(lens.Length, hq, hq, n, m, d, dv, seed: 5, causal: true, mask: mask);
            var o = new FlashAttention().Compute(p, new AttentionSettings { Threads = 1 }).Output;
            for (int b = 0; b < lens.Length; b++)
                for (int h = 0; h < hq; h++)
                {
                    int head = b * hq + h, len = lens[b];
                    var alone = new AttentionProblem<double>(p.Q.Slice(head * n * d, n * d), p.K.Slice(head * m * d, len * d),
                        p.V.Slice(head * m * dv, len * dv), n, len, d, dv, causal: true, mask: new AttentionMask { CausalAlignment = align });
                    var expected = new FlashAttention().Compute(alone, new AttentionSettings { Threads = 1 }).Output;
                    Assert.Equal(expected, o.AsSpan(head * n * dv, n * dv).ToArray());
                }
        }
    }

    [Fact]
    public void A_boolean_mask_acts_as_a_bias_of_minus_infinity()
    {
        int n = 50, m = 140;
        var bm = MaskedData.BooleanMask([2, 1, n, m], 0.3, seed: 3);
        var bias = new double[bm.Data.Length];
        for (int i = 0; i < bias.Length; i++) bias[i] = bm.Data.Span[i] ? 0 : double.NegativeInfinity;
        var withMask = MaskedData.Problem<double>(2, 2, 2, n, m, 4, 4, seed: 8, mask: new AttentionMask { BooleanMask = bm });
        var withBias = withMask.WithMask(new AttentionMask { Bias = new BroadcastTensor<double>(bias, 2, 1, n, m) });
        var a = new FlashAttention().Compute(withMask, new AttentionSettings { Threads = 1 }).Output;
        var b = new FlashAttention().Compute(withBias, new AttentionSettings { Threads = 1 }).Output;
        Assert.Equal(0, TestData.MaxAbsDiff(a, Array.ConvertAll(b, x => x)));
        Assert.Equal(0, TestData.MaxAbsDiff(ReferenceAttention.Compute(withMask), ReferenceAttention.Compute(withBias)));
    }

    [Fact]
    public void A_bias_constant_along_the_keys_changes_nothing()
    {
        // Softmax is shift-invariant per row: a bias b[i] (shape [n, 1]) must not change the output.
        int n = 40, m = 75;
        var plain = MaskedData.Problem<double>(1, 3, 3, n, m, 8, 5, seed: 12, causal: true);
        var shifted = plain.WithMask(new AttentionMask { Bias = MaskedData.RandomBias([n, 1], 50, 4) });
        var a = new FlashAttention().Compute(plain).Output;
        var b = new FlashAttention().Compute(shifted).Output;
        Assert.True(TestData.MaxAbsDiff(a, Array.ConvertAll(b, x => x)) <= 1e-13);
    }

    [Fact]
    public void Bottom_right_alignment_is_top_left_on_the_last_rows_of_a_square_problem()
    {
        // n ≤ m: bottom-right query i is top-left query i + m − n of an m × m problem.
        int n = 13, m = 60, d = 5;
        var square = MaskedData.Problem<double>(1, 1, 1, m, m, d, d, seed: 2, causal: true);
        var last = new AttentionProblem<double>(square.Q.Slice((m - n) * d), square.K, square.V, n, m, d, d, causal: true,
            mask: new AttentionMask { CausalAlignment = CausalAlignment.BottomRight });
        var expected = ReferenceAttention.Compute(square).AsSpan((m - n) * d).ToArray();
        Assert.True(TestData.MaxAbsDiff(ReferenceAttention.Compute(last), expected) <= 1e-15);
        Assert.True(TestData.MaxAbsDiff(new FlashAttention().Compute(last).Output, expected) <= 1e-13);
        // n > m: the first n − m rows see no key (zeros), the rest see j ≤ i + m − n.
        var tall = new AttentionProblem<double>(square.Q, square.K.Slice(0, n * d), square.V.Slice(0, n * d), m, n, d, d, causal: true,
            mask: new AttentionMask { CausalAlignment = CausalAlignment.BottomRight });
        var (o, lse) = new FlashAttention().ComputeWithLogSumExp(tall);
        for (int i = 0; i < m - n; i++)
        {
            Assert.All(o.AsSpan(i * d, d).ToArray(), x => Assert.Equal(0.0, x));
            Assert.Equal(double.NegativeInfinity, lse[i]);
        }
        Assert.True(TestData.MaxAbsDiff(o, ReferenceAttention.Compute(tall)) <= 1e-13);
    }

    [Fact]
    public void A_window_wider_than_every_row_is_the_causal_mask()
    {
        var causal = MaskedData.Problem<float>(2, 2, 1, 70, 50, 8, 8, seed: 4, causal: true, mask: new AttentionMask { CausalAlignment = CausalAlignment.BottomRight });
        var windowed = causal.WithMask(causal.Mask with { Window = 500 });
        var notCausalButWindowed = windowed.With(causal: false);
        var a = new FlashAttention().Compute(causal).Output;
        Assert.Equal(a, new FlashAttention().Compute(windowed).Output);
        Assert.Equal(a, new FlashAttention().Compute(notCausalButWindowed).Output); // a window implies the causal bound
    }

    [Fact]
    public void Fully_masked_rows_give_zeros_and_minus_infinity_never_nan()
    {
        int n = 24, m = 40, d = 4;
        var visible = new bool[n * m];
        for (int i = 0; i < n; i++) for (int j = 0; j < m; j++) visible[i * m + j] = i % 3 != 0 && (i + j) % 2 == 0; // rows 0, 3, 6 … see nothing
        var bias = new double[n * m];
        for (int i = 0; i < n; i++) for (int j = 0; j < m; j++) bias[i * m + j] = i == 1 ? double.NegativeInfinity : 0.5; // row 1: −∞ everywhere
        var mask = new AttentionMask { BooleanMask = new BroadcastTensor<bool>(visible, n, m), Bias = new BroadcastTensor<double>(bias, n, m), KeyLengths = new[] { m, 0 } };
        bool Hidden(int h, int i) => h >= 2 || i % 3 == 0 || i == 1; // batch element 1 has no key at all
        foreach (var p in new object[]
        {
            MaskedData.Problem<double>(2, 2, 1, n, m, d, d, 1, mask: mask),
            MaskedData.Problem<float>(2, 2, 1, n, m, d, d, 1, mask: mask),
            MaskedData.Problem<Half>(2, 2, 1, n, m, d, d, 1, mask: mask),
        })
        {
            switch (p)
            {
                case AttentionProblem<double> p64: Check(p64); break;
                case AttentionProblem<float> p32: Check(p32); break;
                case AttentionProblem<Half> p16: Check(p16); break;
            }
        }

        void Check<T>(AttentionProblem<T> p) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
        {
            var (o, lse) = new FlashAttention().ComputeWithLogSumExp(p, threads: 2);
            var (ro, rl) = ReferenceAttention.ComputeWithLogSumExp(p);
            for (int h = 0; h < p.Heads; h++)
                for (int i = 0; i < n; i++)
                {
                    bool hidden = Hidden(h, i);
                    for (int c = 0; c < d; c++)
                    {
                        Assert.True(T.IsFinite(o[(h * n + i) * d + c]), $"{typeof(T).Name} head {h} row {i}: {o[(h * n + i) * d + c]}");
                        if (hidden) { Assert.Equal(T.Zero, o[(h * n + i) * d + c]); Assert.Equal(0.0, ro[(h * n + i) * d + c]); }
                    }
                    Assert.Equal(hidden, T.IsNegativeInfinity(lse[h * n + i]));
                    Assert.Equal(hidden, double.IsNegativeInfinity(rl[h * n + i]));
                }
            var g = new T[p.OutputLength];
            for (int i = 0; i < g.Length; i++) g[i] = T.CreateTruncating(Math.Sin(i));
            var grads = FastAttention.Gradient.AttentionBackward.Compute(p, g, threads: 2);
            Assert.All(grads.DQ.ToArray(), x => Assert.True(T.IsFinite(x)));
            Assert.All(grads.DK.ToArray(), x => Assert.True(T.IsFinite(x)));
            Assert.All(grads.DV.ToArray(), x => Assert.True(T.IsFinite(x)));
            for (int h = 0; h < p.Heads; h++)
                for (int i = 0; i < n; i++)
                    if (Hidden(h, i))
                        for (int c = 0; c < d; c++) Assert.Equal(T.Zero, grads.DQ.Span[(h * n + i) * d + c]);
        }
    }

    [Fact]
    public void Nan_and_infinity_in_hidden_positions_never_leak()
    {
        int batch = 2, hq = 2, n = 33, m = 150, d = 8, dv = 8;
        int[] lens = [150, 70];
        var vis = MaskedData.BooleanMask([batch, 1, n, m], 0.5, seed: 6);
        var cleanBias = MaskedData.RandomBias([batch, hq, n, m], 2, seed: 7);
        var dirtyBias = cleanBias.Data.ToArray();
        var clean = MaskedData.Problem<double>(batch, hq, hq, n, m, d, dv, 9);
        var k = clean.K.ToArray(); var v = clean.V.ToArray();
        var mask = new AttentionMask { KeyLengths = lens, BooleanMask = vis, Bias = cleanBias, Window = 40, CausalAlignment = CausalAlignment.BottomRight };
        var cleanProblem = clean.WithMask(mask).With(causal: true);
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < hq; h++)
            {
                var head = cleanProblem.Head(b * hq + h);
                for (int i = 0; i < n; i++)
                {
                    var row = head.Row(i);
                    for (int j = 0; j < m; j++)
                        if (!row.IsVisible(j)) dirtyBias[((b * hq + h) * n + i) * m + j] = (i + j) % 2 == 0 ? double.NaN : double.PositiveInfinity;
                }
                // Padding rows of K and V (past the key length) hold garbage.
                for (int j = lens[b]; j < m; j++)
                {
                    k.AsSpan(((b * hq + h) * m + j) * d, d).Fill(double.NaN);
                    v.AsSpan(((b * hq + h) * m + j) * dv, dv).Fill(double.PositiveInfinity);
                }
            }
        var dirty = new AttentionProblem<double>(clean.Q, k, v, n, m, d, dv, batch * hq, null, true,
            mask with { Bias = new BroadcastTensor<double>(dirtyBias, batch, hq, n, m) }, batch * hq, batch);
        var a = new FlashAttention().Compute(cleanProblem, new AttentionSettings { Threads = 2 }).Output;
        var b2 = new FlashAttention().Compute(dirty, new AttentionSettings { Threads = 2 }).Output;
        Assert.All(b2, x => Assert.True(double.IsFinite(x)));
        Assert.Equal(a, b2); // hidden positions are never read: bitwise the clean result
        Assert.True(TestData.MaxAbsDiff(ReferenceAttention.Compute(dirty), ReferenceAttention.Compute(cleanProblem)) == 0);
        var g = TestData.Uniform(dirty.OutputLength == 0 ? 0 : (int)dirty.OutputLength, 1, 3);
        var gd = FastAttention.Gradient.AttentionBackward.Compute(dirty, g);
        var gc = FastAttention.Gradient.AttentionBackward.Compute(cleanProblem, g);
        Assert.Equal(gc.DQ.ToArray(), gd.DQ.ToArray());
        Assert.Equal(gc.DK.ToArray(), gd.DK.ToArray());
        Assert.Equal(gc.DV.ToArray(), gd.DV.ToArray());
    }

    [Fact]
    public void Masked_grouped_query_partials_over_a_key_split_merge_to_the_unsplit_result()
    {
        // Mergeable partial states (split-key decoding, a KV cache appended block by block) under GQA, key lengths, a
        // boolean mask and a bias: each part is the problem over its keys (K/V rows, key lengths, mask and bias columns).
        int batch = 2, hq = 4, hkv = 2, n = 9, m = 130, d = 6, dv = 5;
        int[] lens = [130, 75];
        var vis = MaskedData.BooleanMask([batch, 1, n, m], 0.7, seed: 21);
        var bias = MaskedData.RandomBias([1, hq, 1, m], 2, seed: 22);
        var mask = new AttentionMask { KeyLengths = lens, BooleanMask = vis, Bias = bias };
        var p = MaskedData.Problem<double>(batch, hq, hkv, n, m, d, dv, seed: 23, mask: mask);
        foreach (int cut in new[] { 1, 64, 75, 100 })
        {
            AttentionPartial<double>? merged = null;
            foreach (var (lo, hi) in new[] { (cut, m), (0, cut) }) // merged in reverse key order: the merge is order-free
            {
                var part = Columns(p, lo, hi);
                var partial = new FlashAttention().ComputePartial(part, threads: 2);
                if (merged is null) merged = partial; else merged.MergeFrom(partial);
            }
            var output = new double[p.OutputLength];
            merged!.Normalize(output);
            Assert.True(TestData.MaxAbsDiff(output, ReferenceAttention.Compute(p)) <= 1e-12, $"cut {cut}");
        }

        static AttentionProblem<double> Columns(AttentionProblem<double> p, int lo, int hi)
        {
            int w = hi - lo, kvh = p.KvHeads, d = p.D, dv = p.Dv, m = p.M;
            var k = new double[kvh * w * d]; var v = new double[kvh * w * dv];
            for (int g = 0; g < kvh; g++)
            {
                p.K.Span.Slice((g * m + lo) * d, w * d).CopyTo(k.AsSpan(g * w * d));
                p.V.Span.Slice((g * m + lo) * dv, w * dv).CopyTo(v.AsSpan(g * w * dv));
            }
            var lens = p.Mask.KeyLengths.ToArray().Select(l => Math.Clamp(l - lo, 0, w)).ToArray();
            var mk = p.Mask with { KeyLengths = lens, BooleanMask = Slice(p.Mask.BooleanMask!, lo, hi), Bias = Slice(p.Mask.Bias!, lo, hi) };
            return new AttentionProblem<double>(p.Q, k, v, p.N, w, d, dv, p.Heads, p.Scale, p.Causal, mk, p.KvHeads, p.Batch);
        }

        static BroadcastTensor<TE> Slice<TE>(BroadcastTensor<TE> t, int lo, int hi) where TE : unmanaged
        {
            var s = t.Shape.ToArray();
            int rows = s[0] * s[1] * s[2], m = s[3], w = hi - lo;
            var data = new TE[rows * w];
            for (int r = 0; r < rows; r++) t.Data.Span.Slice(r * m + lo, w).CopyTo(data.AsSpan(r * w));
            return new BroadcastTensor<TE>(data, s[0], s[1], s[2], w);
        }
    }

    [Fact]
    public void Key_blocks_are_classified_hidden_full_or_partial()
    {
        // Window 64 at n = m = 1024 (top-left): tile [256, 320) sees keys (192, 320).
        var w = new KernelMask { N = 1024, M = 1024, Window = 64, Upper = true };
        Assert.Equal(BlockVisibility.Hidden, w.Classify(256, 64, 0, 64));
        Assert.Equal(BlockVisibility.Hidden, w.Classify(256, 64, 128, 64));
        Assert.Equal(BlockVisibility.Partial, w.Classify(256, 64, 192, 64));
        Assert.Equal(BlockVisibility.Partial, w.Classify(256, 64, 256, 64));
        Assert.Equal(BlockVisibility.Hidden, w.Classify(256, 64, 320, 64));
        Assert.Equal((3, 4), w.BlockSpan(256, 64, 64));
        // Causal, wide rows: blocks left of the diagonal are fully visible; key count M cuts the last block.
        var c = new KernelMask { N = 1024, M = 1000, Upper = true };
        Assert.Equal(BlockVisibility.Full, c.Classify(512, 64, 0, 64));
        Assert.Equal(BlockVisibility.Partial, c.Classify(512, 64, 512, 64));
        Assert.Equal(BlockVisibility.Hidden, c.Classify(512, 64, 576, 64));
        Assert.Equal(BlockVisibility.Partial, new KernelMask { N = 64, M = 1000 }.Classify(0, 64, 960, 64));
        // A boolean mask: an all-false region is hidden, an all-true one full.
        var bits = new bool[64 * 128];
        for (int i = 0; i < 64; i++) for (int j = 64; j < 128; j++) bits[i * 128 + j] = true;
        bits[5 * 128 + 100] = false;
        unsafe
        {
            fixed (bool* pb = bits)
            {
                var b = new KernelMask { N = 64, M = 128, Visible = pb, VisibleRow = 128, VisibleCol = 1 };
                Assert.Equal(BlockVisibility.Hidden, b.Classify(0, 64, 0, 64));
                Assert.Equal(BlockVisibility.Partial, b.Classify(0, 64, 64, 64));
                Assert.Equal(BlockVisibility.Full, b.Classify(8, 32, 64, 64));
            }
        }
    }
}
