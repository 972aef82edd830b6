using System.CommandLine;
using FastAttention.Cli.Commands;

namespace FastAttention.Cli.Infrastructure;

/// <summary>The command tree. Each command lives in its own file under Commands/ and is added here with one line.</summary>
internal static class CommandTree
{
    public static RootCommand Build()
    {
        var root = new RootCommand("fastattn — softmax attention faster than n²d, with a guaranteed entrywise error.");
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        root.Subcommands.Add(PlanCommand.Create());
        root.Subcommands.Add(CalibrateCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(ReduceCommand.Create());
        root.Subcommands.Add(GradientCommand.Create());
        root.Subcommands.Add(BackwardCommand.Create());
        var bench = new Command("bench", "Benchmarks (ratios measured in one run).");
        bench.Subcommands.Add(BenchExactCommand.Create());
        bench.Subcommands.Add(BenchGradientCommand.Create());
        bench.Subcommands.Add(BenchBackwardCommand.Create());
        bench.Subcommands.Add(BenchPolynomialCommand.Create());
        bench.Subcommands.Add(BenchRangeCommand.Create());
        bench.Subcommands.Add(BenchSemanticsCommand.Create());
        bench.Subcommands.Add(BenchPlannerCommand.Create());
        root.Subcommands.Add(bench);
        var experiment = new Command("experiment", "Experiments that reproduce the papers' claims, with plots and CSV.");
        experiment.Subcommands.Add(TransitionExperimentCommand.Create());
        experiment.Subcommands.Add(ScalingExperimentCommand.Create());
        experiment.Subcommands.Add(RegimesExperimentCommand.Create());
        experiment.Subcommands.Add(HeadsExperimentCommand.Create());
        root.Subcommands.Add(experiment);
        return root;
    }
}
