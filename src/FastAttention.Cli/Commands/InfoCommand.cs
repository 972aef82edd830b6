using System.CommandLine;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn info</c>: SIMD support, threads, version.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var cmd = new Command("info", "CPU SIMD support, thread count and library version.");
        cmd.SetAction(r =>
        {
            var o = r.InvocationConfiguration.Output;
            o.WriteLine($"fastattn {typeof(AttentionAlgorithm).Assembly.GetName().Version}");
            o.WriteLine($"runtime        {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription} ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture})");
            o.WriteLine($"processors     {Environment.ProcessorCount}");
            o.WriteLine($"Vector512      {Vector512.IsHardwareAccelerated} (AVX-512F {Avx512F.IsSupported})");
            o.WriteLine($"Vector256      {Vector256.IsHardwareAccelerated} (AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported})");
            o.WriteLine($"Vector128      {Vector128.IsHardwareAccelerated}");
            o.WriteLine($"kernel width   {Exact.SimdInfo.Describe()}");
            o.WriteLine($"algorithms     {string.Join(", ", AttentionAlgorithms.Names)}");
            return 0;
        });
        return cmd;
    }
}
