using BenchmarkDotNet.Running;

namespace FastAttention.Benchmarks;

public static class Program
{
    /// <summary>dotnet run -c Release --project bench/FastAttention.Benchmarks -- --filter '*'</summary>
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
