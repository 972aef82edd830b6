using System.CommandLine;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn calibrate</c>: measures the machine rates the planner predicts seconds with, and caches them.</summary>
internal static class CalibrateCommand
{
    public static Command Create()
    {
        var show = new Option<bool>("--show") { Description = "Print the rates in force (cached or built-in) without measuring." };
        var cmd = new Command("calibrate", "Measure FMA, exp, bandwidth and range-structure rates for the planner ('auto'); cached per machine.") { show };
        cmd.SetAction(r =>
        {
            var o = r.InvocationConfiguration.Output;
            var err = r.InvocationConfiguration.Error;
            MachineRates rates;
            if (r.GetValue(show)) rates = RatesCache.LoadOrDefault();
            else
            {
                err.WriteLine("fastattn: calibrating (a few seconds) …");
                rates = Planning.Calibration.Measure(new Progress<string>(line => err.WriteLine($"  {line}")));
                RatesCache.Save(rates);
                o.WriteLine($"saved to {RatesCache.PathFor()}");
            }
            o.WriteLine($"source                 {rates.Source}");
            o.WriteLine($"exact kernel           {rates.FlopsPerSecond / 1e9:F1} GFLOP/s per thread, {rates.ExpsPerSecond / 1e9:F2} G exp/s per thread");
            o.WriteLine($"approximate kernels    {rates.ScalarFlopsPerSecond / 1e9:F1} GFLOP/s (float64) per thread");
            o.WriteLine($"range structures       {rates.SecondsPerTreeNode * 1e9:F1} ns per node, {rates.SecondsPerLeafKey * 1e9:F1} ns per leaf key");
            o.WriteLine($"memory bandwidth       {rates.BytesPerSecond / 1e9:F1} GB/s");
            return 0;
        });
        return cmd;
    }
}
