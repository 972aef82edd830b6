using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class DimacsCnfTests
{
    [Fact]
    public void Parses_comments_multiline_clauses_and_the_percent_end()
    {
        var f = DimacsCnf.Parse("c hello\nc more\np cnf 4 3\n1 -2\n 3 0 -4 0\r\n2 4 0\n%\n0\n");
        Assert.Equal(4, f.Variables);
        Assert.Equal(3, f.Clauses.Count);
        Assert.Equal(new[] { 1, -2, 3 }, f.Clauses[0]);
        Assert.Equal(new[] { -4 }, f.Clauses[1]);
        Assert.Equal(new[] { 2, 4 }, f.Clauses[2]);
    }

    [Theory]
    [InlineData("1 2 0\np cnf 2 1\n", 1, "before the 'p cnf' header")]
    [InlineData("p cnf 2 1\n1 x 0\n", 2, "'x' is not an integer")]
    [InlineData("p cnf 2 1\n1 3 0\n", 2, "outside 1..2")]
    [InlineData("p cnf 2 2\n1 2 0\n", 3, "declares 2 clauses but 1")]
    [InlineData("p cnf 2 1\nc x\n1 2\n", 3, "not terminated by 0")]
    [InlineData("p cnf 2\n", 1, "'p cnf <variables> <clauses>'")]
    [InlineData("p cnf 2 1\np cnf 2 1\n1 0\n", 2, "second 'p cnf' header")]
    [InlineData("c only a comment\n", 2, "no 'p cnf' header")]
    public void Rejects_malformed_input_with_the_line(string text, int line, string fragment)
    {
        var e = Assert.Throws<DimacsFormatException>(() => DimacsCnf.Parse(text, "f.cnf"));
        Assert.Equal(line, e.Line);
        Assert.Contains($"f.cnf:{line}:", e.Message);
        Assert.Contains(fragment, e.Message);
        Assert.Equal("cnf", e.ParamName);
    }

    [Fact]
    public void Brute_force_and_evaluation_agree()
    {
        var f = DimacsCnf.Parse("p cnf 2 3\n1 2 0\n-1 0\n-2 1 0\n");
        Assert.Null(f.BruteForce());
        var g = DimacsCnf.Parse("p cnf 2 2\n1 2 0\n-1 0\n");
        var x = g.BruteForce();
        Assert.NotNull(x);
        Assert.True(g.IsSatisfiedBy(x));
        Assert.Equal(new[] { false, true }, x);
    }
}
