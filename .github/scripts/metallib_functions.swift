// Prints the function names in a .metallib, one per line:
//   swift .github/scripts/metallib_functions.swift path/to/lib.metallib
// Loading a library needs a Metal device; the paravirtual GPU of hosted
// runners is enough for that (nothing is run).
import Foundation
import Metal

guard CommandLine.arguments.count == 2 else {
    FileHandle.standardError.write("usage: metallib_functions.swift LIB.metallib\n".data(using: .utf8)!)
    exit(2)
}
guard let device = MTLCreateSystemDefaultDevice() else {
    FileHandle.standardError.write("no Metal device\n".data(using: .utf8)!)
    exit(3)
}
do {
    let url = URL(fileURLWithPath: CommandLine.arguments[1])
    let library = try device.makeLibrary(URL: url)
    for name in library.functionNames.sorted() {
        print(name)
    }
} catch {
    FileHandle.standardError.write("cannot load \(CommandLine.arguments[1]): \(error)\n".data(using: .utf8)!)
    exit(1)
}
