# Writes P/share/miclip/world.yaml at install time (CMakeLists.txt, "install"): the main job's
# config with the tiny world's models and concept lists at their installed absolute paths, and
# the output and images relative to the config itself (results/{name}, results/world-data), so a
# copy of this file in a working folder runs there.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(IS_ABSOLUTE "${MC_DATADIR}")
  set(datadir "${MC_DATADIR}/miclip")
else()
  set(datadir "${prefix}/${MC_DATADIR}/miclip")
endif()
file(READ "${MC_SOURCE_DIR}/experiments/world.yaml" text)
string(REPLACE "output_dir: ../results/{name}            # relative to this file's directory"
               "output_dir: results/{name}               # relative to this file's directory" text "${text}")
string(REPLACE "root: ../results/world-data" "root: results/world-data" text "${text}")
string(REPLACE ": world/" ": ${datadir}/world/" text "${text}")
foreach(must "output_dir: results/" "root: results/world-data" "target: ${datadir}/world/vit"
        "clip: ${datadir}/world/clip" "file: ${datadir}/world/concepts.txt")
  string(FIND "${text}" "${must}" at)
  if(at LESS 0)
    message(FATAL_ERROR "install: experiments/world.yaml changed; cmake/install-world-config.cmake cannot place '${must}'")
  endif()
endforeach()
set(note "# Installed by `cmake --install`: models from ${datadir}/world; output and images\n# relative to this file. Copy it to a working folder and run it there:\n#   cp ${datadir}/world.yaml . && miclip world make --out results/world-data --seed 1 \\\n#       --per-class 100 --val-per-class 20 --unseen-per-class 20 && mpirun -n 2 miclip run world.yaml\n")
set(dest "$ENV{DESTDIR}${datadir}/world.yaml")
message(STATUS "Installing: ${dest}")
file(WRITE "${dest}" "${note}${text}")
