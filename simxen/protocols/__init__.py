"""simxen.protocols"""
