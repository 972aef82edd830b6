using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class RelevantKeysTests
{
    [Theory]
    [InlineData(1, 100.0, 1e-3)]
    [InlineData(2, 10.0, 1e-6)]
    [InlineData(3, 5.0, 1e-4)]
    public void Discarding_irrelevant_keys_moves_the_output_by_at_most_the_lemma_3_2_bound(int d, double bound, double share)
    {
        // Direct check of Lemma 3.2's accounting on the exact float64 softmax: drop every key more than T below the
        // row maximum and compare with all keys.
        int n = 80, m = 300, dv = 2;
        var q = TestData.Uniform(n * d, bound, 1); var k = TestData.Uniform(m * d, bound, 2); var v = TestData.Uniform(m * dv, 1, 3);
        double vMax = v.Max(Math.Abs);
        var rk = RelevantKeys.For(m, vMax, share);
        Assert.True(rk.OutputError(vMax) <= share * (1 + 1e-12));
        // Shrink T so that some keys really are discarded, keeping the bound formula honest for that T.
        double width = Math.Min(rk.Width, 3.0);
        double discardedBound = 2 * m * Math.Exp(-width) * vMax;
        double worst = 0; int dropped = 0;
        for (int i = 0; i < n; i++)
        {
            var x = new double[m];
            double max = double.NegativeInfinity;
            for (int j = 0; j < m; j++) { double s = 0; for (int c = 0; c < d; c++) s += q[i * d + c] * k[j * d + c]; x[j] = s; max = Math.Max(max, s); }
            for (int col = 0; col < dv; col++)
            {
                double za = 0, na = 0, zr = 0, nr = 0;
                for (int j = 0; j < m; j++)
                {
                    double w = Math.Exp(x[j] - max);
                    za += w; na += w * v[j * dv + col];
                    if (x[j] >= max - width) { zr += w; nr += w * v[j * dv + col]; } else if (col == 0) dropped++;
                }
                worst = Math.Max(worst, Math.Abs(na / za - nr / zr));
            }
        }
        Assert.True(dropped > 0);
        Assert.True(worst <= discardedBound, $"discarding changed the output by {worst:E3} > {discardedBound:E3}");
    }

    [Fact]
    public void Threshold_grows_like_log_of_m_times_v_over_share()
    {
        var a = RelevantKeys.For(1000, 1, 1e-6);
        var b = RelevantKeys.For(1000, 1, 1e-9);
        Assert.Equal(Math.Log(1000), b.Width - a.Width, 9);
        Assert.Equal(Math.Log(2 * 1000 / 1e-6), a.Width, 9);
        Assert.Equal(1e-6, a.OutputError(1), 9);
    }
}

public class CentredExpansionTests
{
    private const double U = FastAttention.Numerics.FloatingPoint.U;

    [Theory]
    [InlineData(1, 0.75, 1e-6)]
    [InlineData(1, 4.0, 1e-9)]
    [InlineData(2, 2.5, 1e-7)]
    [InlineData(2, 8.5, 1e-6)]
    [InlineData(1, 15.0, 1e-4)]
    [InlineData(3, 6.0, 1e-5)]
    public void Proven_bound_holds_and_is_nearly_attained(int d, double h, double target)
    {
        var e = CentredExpansion.Create(d, h, target);
        Assert.True(e.AbsoluteError <= target);
        // Measured on a dense grid (Horner's own rounding allowed for): never above the proof ...
        double worst = 0;
        for (int i = 0; i <= 20000; i++)
        {
            double t = -1 + 2.0 * i / 20000;
            worst = Math.Max(worst, Math.Abs(e.Evaluate(t) - Math.Exp(h * t)));
        }
        double horner = 4 * (e.Degree + 2) * U * e.CoefficientSum;
        Assert.True(worst <= e.AbsoluteError + horner, $"measured {worst:E3} > proven {e.AbsoluteError:E3} (+{horner:E2})");
        // ... and the proof is not loose by more than a small factor where the truncation dominates rounding: the
        // polynomial is the near-best one of its degree, so the degree is not wasted.
        if (e.AbsoluteError > 1000 * horner)
            Assert.True(worst >= 0.05 * e.AbsoluteError, $"measured {worst:E3} ≪ proven {e.AbsoluteError:E3}");
    }

    [Theory]
    [InlineData(1e-6)]
    [InlineData(3.3e-9)]
    [InlineData(7.77e-5)]
    public void Cached_expansions_are_shared_within_a_quarter_binade_and_never_less_accurate_than_asked(double target)
    {
        // Two requests in the same quarter of a binade get the same expansion (one cache entry — the same object unless
        // another test's requests evicted it in between, so the test compares values); it meets the smaller of them.
        double a = target, b = target * 1.0000001;
        var ea = CentredExpansion.TryCreate(3, 6, a, int.MaxValue)!;
        var eb = CentredExpansion.TryCreate(3, 6, b, int.MaxValue)!;
        Assert.True(ea.AbsoluteError <= Math.Min(a, b), $"{ea.AbsoluteError:E3} > {Math.Min(a, b):E3}");
        Assert.Equal(Math.Floor(4 * Math.ScaleB(a, -Math.ILogB(a))), Math.Floor(4 * Math.ScaleB(b, -Math.ILogB(b)))); // same quarter
        Assert.Equal((ea.Degree, ea.Terms, ea.AbsoluteError), (eb.Degree, eb.Terms, eb.AbsoluteError));
        // A request a factor 2 away is a different entry, and as accurate as it asks.
        var ec = CentredExpansion.TryCreate(3, 6, target / 2, int.MaxValue)!;
        Assert.NotSame(ea, ec);
        Assert.True(ec.AbsoluteError <= target / 2);
        // The term cap applies to cached entries too (no tables handed out past it).
        Assert.Null(CentredExpansion.TryCreate(3, 6, a, ea.Terms - 1));
        var again = CentredExpansion.TryCreate(3, 6, a, ea.Terms)!;
        Assert.Equal((ea.Degree, ea.AbsoluteError), (again.Degree, again.AbsoluteError));
    }

    [Fact]
    public void Chebyshev_coefficient_enclosures_contain_the_bessel_values()
    {
        // I_k(x) = Σ_j (x/2)^{2j+k}/(j!(j+k)!) in 28-digit decimal arithmetic (an independent, more precise evaluation).
        foreach (double h in new[] { 0.75, 3.0, 11.5 })
        {
            var (lo, hi) = CentredExpansion.ChebyshevEnclosures(h, 40);
            for (int k = 0; k <= (int)h + 6; k++)
            {
                decimal half = (decimal)h / 2, lead = 1;
                for (int i = 1; i <= k; i++) lead = lead * half / i;
                decimal term = lead, sum = 0;
                for (int j = 0; j < 200 && term != 0; j++) { sum += term; term = term * half * half / ((j + 1) * (j + 1 + k)); }
                double ik = (double)sum * (k == 0 ? 1 : 2);
                Assert.True(lo[k] <= ik * (1 + 4 * U) && ik * (1 - 4 * U) <= hi[k], $"H={h} k={k}: {ik:R} ∉ [{lo[k]:R}, {hi[k]:R}]");
                Assert.True(hi[k] - lo[k] <= 1e-12 * hi[k]);
            }
        }
    }

    [Theory]
    [InlineData(1, 2.0, 1e-6)]
    [InlineData(2, 6.0, 1e-5)]
    [InlineData(3, 1.5, 1e-8)]
    [InlineData(4, 2.5, 1e-4)]
    public void Folded_multi_index_form_equals_the_polynomial_of_the_logit(int d, double h, double target)
    {
        var e = CentredExpansion.Create(d, h, target);
        // C(g + d, d) multi-indices.
        double count = 1;
        for (int i = 1; i <= d; i++) count = count * (e.Degree + i) / i;
        Assert.Equal((int)Math.Round(count), e.Terms);
        var rng = new Random(d);
        var z = new double[d]; var u = new double[d];
        var pz = new double[e.Terms]; var pu = new double[e.Terms]; var work = new double[e.PowersWork];
        for (int trial = 0; trial < 500; trial++)
        {
            double norm = 0;
            for (int c = 0; c < d; c++) { z[c] = 2 * rng.NextDouble() - 1; norm += Math.Abs(z[c]); }
            double scale = rng.NextDouble() / norm;        // Σ|z_c| ≤ 1
            for (int c = 0; c < d; c++) { z[c] *= scale; u[c] = 2 * rng.NextDouble() - 1; }
            if (trial % 7 == 0) u[0] = Math.Sign(u[0]);    // box corners too
            e.Powers(z, pz, work);
            e.Powers(u, pu, work);
            e.FoldCoefficients(pu);                         // a one-key node's folded moments
            double p = 0, t = 0;
            for (int i = 0; i < e.Terms; i++) p += pz[i] * pu[i];
            for (int c = 0; c < d; c++) t += z[c] * u[c];
            double exact = e.Evaluate(t);
            double rounding = (e.EvaluationUnits + e.FoldUnits + 8) * U * e.Magnitude(h * scale * norm);
            Assert.True(Math.Abs(p - exact) <= rounding, $"|Σ c z^β u^β − P(z·u)| = {Math.Abs(p - exact):E3} > {rounding:E3}");
            Assert.True(Math.Abs(p - Math.Exp(h * t)) <= e.AbsoluteError + rounding);
        }
    }

    [Theory]
    [InlineData(1, 1.5, 1e-8)]
    [InlineData(2, 11.5, 1e-7)]
    [InlineData(3, 15, 1e-4)]
    public void Magnitude_table_bound_is_never_below_the_magnitude(int d, double h, double target)
    {
        var e = CentredExpansion.Create(d, h, target);
        var rng = new Random(3);
        var widths = new List<double> { 0, h, 2 * h, double.Epsilon };
        for (int i = 0; i <= 256; i++) { widths.Add(h * i / 256); widths.Add(Math.BitIncrement(h * i / 256)); widths.Add(Math.BitDecrement(h * i / 256)); }
        for (int i = 0; i < 2000; i++) widths.Add(h * rng.NextDouble());
        foreach (double w in widths)
        {
            if (w < 0) continue;
            double exact = e.Magnitude(w), bound = e.MagnitudeAtMost(w);
            Assert.True(bound >= exact, $"h = {w:R}: table {bound:R} < magnitude {exact:R}");
            // Not a promise, a sanity check: one grid step of 1/256 costs at most e^{H/256 + g/256}-ish.
            Assert.True(bound <= exact * 1.25, $"h = {w:R}: table {bound:R} far above magnitude {exact:R}");
        }
    }

    [Fact]
    public void Unreachable_accuracy_is_refused_as_float64_reach()
    {
        // The coefficients' own rounding is ≈ 2⁻⁵³·e^H ≈ 4e-10 at H = 15.
        var ex = Assert.Throws<AttentionRefusedException>(() => CentredExpansion.Create(2, 15, 1e-13));
        Assert.Equal(RefusalReason.Float64Reach, ex.Refusal.Reason);
    }

    /// <summary>Centred coordinates with the adversarial values mixed in: box corners ±1, zeros, 1 − 2⁻⁵³, and random.</summary>
    private static double[] Coordinates(Random rng, int count)
    {
        double[] special = [1, -1, 0, 1 - Math.ScaleB(1, -53), -1 + Math.ScaleB(1, -53)];
        var u = new double[count];
        for (int i = 0; i < count; i++) u[i] = rng.Next(3) == 0 ? special[rng.Next(special.Length)] : 2 * rng.NextDouble() - 1;
        return u;
    }

    [SimdTheory(16)] [InlineData(1, 6.0, 16)] [InlineData(2, 11.5, 16)] [InlineData(3, 4.0, 16)]
    public void Evaluation_at_16_lanes_agrees_with_the_scalar_form(int d, double h, int lanes) => EvaluationAgreesWithScalar(d, h, lanes);

    [SimdTheory(8)] [InlineData(1, 6.0, 8)] [InlineData(2, 11.5, 8)] [InlineData(3, 4.0, 8)]
    public void Evaluation_at_8_lanes_agrees_with_the_scalar_form(int d, double h, int lanes) => EvaluationAgreesWithScalar(d, h, lanes);

    [SimdTheory(4)] [InlineData(1, 6.0, 4)] [InlineData(2, 11.5, 4)] [InlineData(3, 4.0, 4)]
    public void Evaluation_at_4_lanes_agrees_with_the_scalar_form(int d, double h, int lanes) => EvaluationAgreesWithScalar(d, h, lanes);

    /// <summary>One width of the evaluation against its scalar form within their rounding bound, over 1–5 columns (the
    /// three-column groups' remainders), every row length of the expansion (each vector remainder) and padding of
    /// double.MaxValue past the last column, which the masked lanes must never let through.</summary>
    private static void EvaluationAgreesWithScalar(int d, double h, int lanes)
    {
        var e = CentredExpansion.Create(d, h, 1e-7);
        var rng = new Random(20 + d);
        var work = new double[e.PowersWork];
        foreach (int columns in new[] { 1, 2, 3, 4, 5 })
        {
            var moments = new double[columns * e.Terms + CentredExpansion.Padding];
            for (int t = 0; t < columns * e.Terms; t++) moments[t] = rng.Next(8) == 0 ? 1e6 * (2 * rng.NextDouble() - 1) : 2 * rng.NextDouble() - 1;
            moments.AsSpan(columns * e.Terms).Fill(double.MaxValue); // padding past the last column: must meet only zero weights
            for (int trial = 0; trial < 20; trial++)
            {
                // ‖z‖₁ ≤ 1 as the engine guarantees.
                var z = Coordinates(rng, d);
                double l1 = 0;
                foreach (double x in z) l1 += Math.Abs(x);
                if (l1 > 1) for (int c = 0; c < d; c++) z[c] /= l1;
                var vec = new double[columns]; var sca = new double[columns];
                e.Evaluate(z, moments, columns, vec, work, lanes);
                e.Evaluate(z, moments, columns, sca, work, 1);
                for (int c = 0; c < columns; c++)
                {
                    double mass = 0;
                    for (int t = 0; t < e.Terms; t++) mass += Math.Abs(moments[c * e.Terms + t]); // |z^β| ≤ 1
                    Assert.True(double.IsFinite(vec[c]), $"d {d} columns {columns}: the padding leaked into column {c}");
                    Assert.True(Math.Abs(vec[c] - sca[c]) <= 2 * e.EvaluationUnits * U * mass,
                        $"d {d} {lanes} lanes columns {columns} col {c}: vector {vec[c]:R} vs scalar {sca[c]:R}");
                }
            }
        }
    }

    [SimdTheory(16)] [InlineData(1, 6.0, 16)] [InlineData(2, 8.5, 16)] [InlineData(3, 4.0, 16)]
    public void Key_moments_at_16_lanes_agree_with_the_scalar_form(int d, double h, int lanes) => KeyMomentsAgreeWithScalar(d, h, lanes);

    [SimdTheory(8)] [InlineData(1, 6.0, 8)] [InlineData(2, 8.5, 8)] [InlineData(3, 4.0, 8)]
    public void Key_moments_at_8_lanes_agree_with_the_scalar_form(int d, double h, int lanes) => KeyMomentsAgreeWithScalar(d, h, lanes);

    [SimdTheory(4)] [InlineData(1, 6.0, 4)] [InlineData(2, 8.5, 4)] [InlineData(3, 4.0, 4)]
    public void Key_moments_at_4_lanes_agree_with_the_scalar_form(int d, double h, int lanes) => KeyMomentsAgreeWithScalar(d, h, lanes);

    /// <summary>One width of the key-moment accumulation against its scalar form within their rounding, over value
    /// columns 1, 2 and 4 (the three-column groups' remainders), blocks of 1, 3, 7 and KeyBlock keys, every row length
    /// (each vector remainder), huge values now and then; the padding past the last column must stay exactly 0.</summary>
    private static void KeyMomentsAgreeWithScalar(int d, double h, int lanes)
    {
        var e = CentredExpansion.Create(d, h, 1e-7);
        var rng = new Random(30 + d);
        foreach (int dv in new[] { 1, 2, 4 })
            foreach (int count in new[] { 1, 3, 7, e.KeyBlock })
            {
                var u = Coordinates(rng, count * d);
                var v = new double[count * dv];
                for (int i = 0; i < v.Length; i++) v[i] = rng.Next(5) == 0 ? 1e8 : 2 * rng.NextDouble() - 1; // a huge value now and then
                int len = (dv + 1) * e.Terms + CentredExpansion.Padding;
                var vec = new double[len]; var sca = new double[len];
                var work = new double[e.AccumulateWork(dv)];
                e.AccumulateKeys(u, v, count, dv, vec, work, lanes);
                e.AccumulateKeys(u, v, count, dv, sca, work, 1);
                double vmax = 1;
                foreach (double x in v) vmax = Math.Max(vmax, Math.Abs(x));
                // Each term sums count products of magnitude ≤ max(1, |v|) (|u^β| ≤ 1), each carrying ≤ g + 2 roundings.
                double allowed = 2 * (count + e.Degree + 4) * U * count * vmax;
                for (int t = 0; t < (dv + 1) * e.Terms; t++)
                    Assert.True(Math.Abs(vec[t] - sca[t]) <= allowed, $"d {d} {lanes} lanes dv {dv} count {count} term {t}: vector {vec[t]:R} vs scalar {sca[t]:R}");
                for (int t = (dv + 1) * e.Terms; t < len; t++) Assert.Equal(0.0, vec[t]); // the masked lanes added exact zeros
            }
    }

    [SimdTheory(16)] [InlineData(1, 16)] [InlineData(2, 16)] [InlineData(3, 16)]
    public void Translation_at_16_lanes_is_bit_identical_to_the_scalar_form(int d, int lanes) => TranslationIsBitIdentical(d, lanes);

    [SimdTheory(8)] [InlineData(1, 8)] [InlineData(2, 8)] [InlineData(3, 8)]
    public void Translation_at_8_lanes_is_bit_identical_to_the_scalar_form(int d, int lanes) => TranslationIsBitIdentical(d, lanes);

    [SimdTheory(4)] [InlineData(1, 4)] [InlineData(2, 4)] [InlineData(3, 4)]
    public void Translation_at_4_lanes_is_bit_identical_to_the_scalar_form(int d, int lanes) => TranslationIsBitIdentical(d, lanes);

    /// <summary>One width of the moment translation against the scalar form, bit for bit, over 1, 2, 3 and 5 columns and
    /// chains of every length 1 … g + 1 (each vector remainder), with an identity coordinate and a child on the parent's edge.</summary>
    private static void TranslationIsBitIdentical(int d, int lanes)
    {
        var e = CentredExpansion.Create(d, 8.5, 1e-7);
        var rng = new Random(40 + d);
        foreach (int columns in new[] { 1, 2, 3, 5 })
        {
            var source = new double[columns * e.Terms];
            for (int t = 0; t < source.Length; t++) source[t] = 2 * rng.NextDouble() - 1;
            var delta = new double[d]; var sigma = new double[d];
            for (int c = 0; c < d; c++)
            {
                // Boxes inside the parent, an identity coordinate, and a child touching the parent's edge.
                sigma[c] = c == 0 ? 1 : 0.25 + 0.5 * rng.NextDouble();
                delta[c] = c == 0 ? 0 : (1 - sigma[c]) * (c == d - 1 ? 1 : 2 * rng.NextDouble() - 1);
            }
            var vec = new double[columns * e.Terms]; var sca = new double[columns * e.Terms];
            var work = new double[e.TranslateWork(columns)];
            e.TranslateAdd(source, delta, sigma, vec, columns, work, lanes);
            e.TranslateAdd(source, delta, sigma, sca, columns, work, 1);
            for (int t = 0; t < vec.Length; t++) Assert.Equal(BitConverter.DoubleToInt64Bits(sca[t]), BitConverter.DoubleToInt64Bits(vec[t]));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Translated_moments_equal_moments_summed_at_the_new_centre(int d)
    {
        var e = CentredExpansion.Create(d, 2, 1e-8);
        var rng = new Random(10 + d);
        // Child box inside the parent box (in parent units after mapping).
        var cc = new double[d]; var cw = new double[d]; var pc = new double[d]; var pw = new double[d];
        for (int c = 0; c < d; c++) { pc[c] = 5 * c; pw[c] = 3 + c; cw[c] = 0.4 * pw[c]; cc[c] = pc[c] - 0.5 * pw[c]; }
        var child = new double[e.Terms]; var direct = new double[e.Terms];
        var pwr = new double[e.Terms]; var u = new double[d]; var work = new double[e.PowersWork];
        for (int j = 0; j < 200; j++)
        {
            var key = new double[d];
            for (int c = 0; c < d; c++) key[c] = cc[c] + cw[c] * (2 * rng.NextDouble() - 1);
            double v = 2 * rng.NextDouble() - 1;
            for (int c = 0; c < d; c++) u[c] = (key[c] - cc[c]) / cw[c];
            e.Powers(u, pwr, work);
            for (int t = 0; t < e.Terms; t++) child[t] += pwr[t] * v;
            for (int c = 0; c < d; c++) u[c] = (key[c] - pc[c]) / pw[c];
            e.Powers(u, pwr, work);
            for (int t = 0; t < e.Terms; t++) direct[t] += pwr[t] * v;
        }
        var delta = new double[d]; var sigma = new double[d];
        for (int c = 0; c < d; c++) { delta[c] = (cc[c] - pc[c]) / pw[c]; sigma[c] = cw[c] / pw[c]; }
        var translated = new double[e.Terms];
        e.TranslateAdd(child, delta, sigma, translated, 1, new double[e.TranslateWork(1)]);
        for (int t = 0; t < e.Terms; t++) Assert.Equal(direct[t], translated[t], 1e-11);
    }
}
