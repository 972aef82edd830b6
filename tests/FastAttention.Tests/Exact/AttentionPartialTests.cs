using CsCheck;
using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

public class AttentionPartialTests
{
    /// <summary>The problem restricted to the keys in <paramref name="keys"/> (same Q, those rows of K and V).</summary>
    private static AttentionProblem<T> KeySubset<T>(AttentionProblem<T> p, IReadOnlyList<int> keys) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        var k = new T[p.Heads * keys.Count * p.D];
        var v = new T[p.Heads * keys.Count * p.Dv];
        for (int h = 0; h < p.Heads; h++)
            for (int t = 0; t < keys.Count; t++)
            {
                p.K.Span.Slice((h * p.M + keys[t]) * p.D, p.D).CopyTo(k.AsSpan((h * keys.Count + t) * p.D, p.D));
                p.V.Span.Slice((h * p.M + keys[t]) * p.Dv, p.Dv).CopyTo(v.AsSpan((h * keys.Count + t) * p.Dv, p.Dv));
            }
        return new AttentionProblem<T>(p.Q, k, v, p.N, keys.Count, p.D, p.Dv, p.Heads, p.Scale);
    }

    [Fact]
    public void Any_random_key_split_merged_gives_the_unsplit_result()
    {
        // Random disjoint key sets (1 to 5 parts, some possibly tiny), partials by the exact kernel, merged in a random order.
        Gen.Select(Gen.Int[1, 12], Gen.Int[2, 300], Gen.Int[1, 20], Gen.Int[1, 9], Gen.Int[1, 5], Gen.Int)
            .Sample((n, m, d, dv, parts, seed) =>
            {
                var p = TestData.Problem(n, m, d, dv, 2.0, seed, heads: 2);
                var rng = new Random(seed);
                var owner = Enumerable.Range(0, m).Select(_ => rng.Next(parts)).ToArray();
                AttentionPartial<double>? merged = null;
                foreach (int part in Enumerable.Range(0, parts).OrderBy(_ => rng.Next()))
                {
                    var keys = Enumerable.Range(0, m).Where(j => owner[j] == part).ToArray();
                    if (keys.Length == 0) continue;
                    var partial = new FlashAttention().ComputePartial(KeySubset(p, keys), threads: 1 + part % 3);
                    if (merged is null) merged = partial; else merged.MergeFrom(partial);
                }
                var output = new double[p.OutputLength];
                var lse = new double[p.Heads * n];
                merged!.Normalize(output, lse);
                var (whole, wholeLse) = new FlashAttention().ComputeWithLogSumExp(p, threads: 2);
                return TestData.MaxAbsDiff(output, ReferenceAttention.Compute(p)) <= 1e-12 * p.VMax
                    && TestData.MaxAbsDiff(lse, wholeLse) <= 1e-12 * (1 + wholeLse.Max(Math.Abs))
                    && TestData.MaxAbsDiff(output, whole) <= 1e-13 * p.VMax;
            }, iter: 60);
    }

    [Fact]
    public void Float32_partials_merge_to_float32_accuracy()
    {
        var p64 = TestData.Problem(20, 500, 16, 8, 1.0, seed: 3);
        var p = FlashAttentionTests.ToFloat32(p64);
        var left = new FlashAttention().ComputePartial(KeySubset(p, Enumerable.Range(0, 137).ToArray()));
        var right = new FlashAttention().ComputePartial(KeySubset(p, Enumerable.Range(137, 363).ToArray()));
        var output = new float[p.OutputLength];
        AttentionPartial<float>.Merge(right, left).Normalize(output);
        double tol = FlashAttentionTests.Float32Tolerance(16, 500, p.VMax);
        Assert.True(TestData.MaxAbsDiff(output, ReferenceAttention.Compute(p)) <= tol);
    }

    [Fact]
    public void Empty_partials_merge_without_nan_and_are_the_identity()
    {
        var p = TestData.Problem(4, 30, 3, 2, 1.0, seed: 4);
        var full = new FlashAttention().ComputePartial(p);
        var empty = new AttentionPartial<double>(4, 2);
        Assert.True(empty.IsEmpty(0));
        var a = AttentionPartial<double>.Merge(empty, full);
        var b = AttentionPartial<double>.Merge(full, empty);
        Assert.True(a.Output.SequenceEqual(full.Output) && a.Max.SequenceEqual(full.Max) && a.Sum.SequenceEqual(full.Sum));
        Assert.True(b.Output.SequenceEqual(full.Output) && b.Max.SequenceEqual(full.Max) && b.Sum.SequenceEqual(full.Sum));
        var both = AttentionPartial<double>.Merge(empty, new AttentionPartial<double>(4, 2));
        var output = new double[8];
        var lse = new double[4];
        both.Normalize(output, lse);
        Assert.All(output, x => Assert.Equal(0.0, x));
        Assert.All(lse, x => Assert.Equal(double.NegativeInfinity, x));
        Assert.All(both.Max.ToArray(), x => Assert.Equal(double.NegativeInfinity, x));
    }

    [Fact]
    public void Normalized_results_over_disjoint_keys_merge_through_their_log_sum_exp()
    {
        // The lse + normalised-output form: two finished results over disjoint keys combine into the whole.
        var p = TestData.Problem(9, 80, 5, 4, 1.5, seed: 5);
        var (o1, l1) = new FlashAttention().ComputeWithLogSumExp(KeySubset(p, Enumerable.Range(0, 33).ToArray()));
        var (o2, l2) = new FlashAttention().ComputeWithLogSumExp(KeySubset(p, Enumerable.Range(33, 47).ToArray()));
        var merged = AttentionPartial<double>.FromNormalized(o1, l1, 4);
        merged.MergeFrom(AttentionPartial<double>.FromNormalized(o2, l2, 4));
        var output = new double[p.OutputLength];
        merged.Normalize(output);
        Assert.True(TestData.MaxAbsDiff(output, ReferenceAttention.Compute(p)) <= 1e-13);
    }

    [Fact]
    public void Merging_rows_with_far_apart_maxima_underflows_the_small_side_cleanly()
    {
        double m1 = 0, s1 = 2;
        var o1 = new double[] { 1, 2 };
        AttentionPartial<double>.MergeRow(ref m1, ref s1, o1, 2000, 3, new double[] { 5, 7 });
        Assert.Equal(2000, m1);
        Assert.Equal(3, s1);
        Assert.Equal(new double[] { 5, 7 }, o1);
    }

    [Fact]
    public void Shape_mismatches_and_bad_log_sum_exps_name_the_argument()
    {
        var a = new AttentionPartial<double>(3, 2);
        Assert.Equal("other", Assert.Throws<ArgumentException>(() => a.MergeFrom(new AttentionPartial<double>(3, 4))).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => a.Normalize(new double[5])).ParamName);
        Assert.Equal("logSumExp", Assert.Throws<ArgumentException>(() => AttentionPartial<double>.FromNormalized(new double[2], [double.NaN], 2)).ParamName);
        Assert.Equal("rows", Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionPartial<float>(-1, 2)).ParamName);
    }
}
