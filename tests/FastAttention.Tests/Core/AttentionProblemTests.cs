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
