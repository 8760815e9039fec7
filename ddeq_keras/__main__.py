"""`python -m ddeq_keras`: the project's main job, offline, on the embedded default.

For now this trains and evaluates the small equilibrium example
(`ddeq_keras.examples.toy_equilibrium`) and prints its solver statistics.
"""

import sys


def main(argv=None):
    from ddeq_keras.examples import toy_equilibrium

    toy_equilibrium.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
